"""PostgreSQL's client programs (pg_dump, pg_restore, pg_basebackup): finding and running them."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from nextoffer.domain.errors import BackendUnavailableError, ConfigError
from nextoffer.ops.manifest import BackupError
from nextoffer.store import URL
from nextoffer.store.engine import parse_database_url, safe_url

# Server-level statements (CREATE/DROP DATABASE, catalogue counts) live in the store; they
# are named here too because every caller of the PostgreSQL tools reaches them through here.
from nextoffer.store.server import create_database as create_database
from nextoffer.store.server import database_exists as database_exists
from nextoffer.store.server import drop_database as drop_database
from nextoffer.store.server import psycopg_url as psycopg_url
from nextoffer.store.server import user_table_count as user_table_count

BIN_SETTING = "NEXTOFFER_POSTGRES_BIN_DIR"
# URL query parameters that libpq reads from the environment under another name.
_QUERY_ENV = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME",
    "options": "PGOPTIONS",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
}
_UNREACHABLE_HINTS = ("connection to server", "could not connect", "Connection refused")


def pg_program(name: str, bin_dir: str = "") -> str:
    """The path of PostgreSQL program `name`.

    `bin_dir` (the setting) wins; otherwise the newest version under /usr/lib/postgresql
    (Debian keeps one folder per major version, and pg_dump must be at least as new as the
    server), then PATH.
    """
    if bin_dir:
        candidate = Path(bin_dir) / name
        if not candidate.is_file():
            raise ConfigError(f"{BIN_SETTING}: there is no {name} in {bin_dir}")
        return str(candidate)
    versions = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdecimal() else 0,
        reverse=True,
    )
    if versions:
        return str(versions[0])
    found = shutil.which(name)
    if found is None:
        raise ConfigError(
            f"{name} is not installed: install the PostgreSQL client programs "
            f"(Debian: postgresql-client) or set {BIN_SETTING}"
        )
    return found


def parse_url(url: str | URL, setting: str) -> URL:
    """A SQLAlchemy URL, or a ConfigError naming `setting`."""
    return parse_database_url(url, setting)


def libpq_env(url: str | URL, *, database: str | None = None) -> dict[str, str]:
    """Connection settings for libpq programs as PG* variables.

    A password never goes on a command line, where `ps` would show it.
    """
    parsed = parse_url(url, "database URL")
    env = {"PGCONNECT_TIMEOUT": "10"}
    if parsed.host:
        env["PGHOST"] = parsed.host
    if parsed.port:
        env["PGPORT"] = str(parsed.port)
    if parsed.username:
        env["PGUSER"] = parsed.username
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    name = database if database is not None else parsed.database
    if name:
        env["PGDATABASE"] = name
    for key, variable in _QUERY_ENV.items():
        value = parsed.query.get(key)
        if isinstance(value, str):
            env[variable] = value
        elif isinstance(value, tuple) and value:
            env[variable] = value[-1]
    return env


class PgProcess:
    """A running PostgreSQL program whose errors come back as one line."""

    def __init__(self, args: Sequence[str], env: dict[str, str], what: str, target: str) -> None:
        self.what = what
        self.target = target
        # stderr to a file, not a pipe: a chatty program must never block on a full pipe
        # while we wait for it.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in wait or kill)
        # The caller's PG* variables stay (as libpq in this process sees them); ours win.
        merged = {**os.environ, **env}
        try:
            self.process = subprocess.Popen(
                list(args), env=merged, stdout=subprocess.DEVNULL, stderr=self._stderr
            )
        except OSError as exc:
            self._stderr.close()
            raise ConfigError(f"{what}: cannot run {args[0]}: {exc.strerror}") from None

    def wait(self, setting: str) -> None:
        """Wait for the program; a failure becomes BackendUnavailableError or BackupError."""
        code = self.process.wait()
        self._stderr.seek(0)
        text = self._stderr.read().decode("utf-8", "replace")
        self._stderr.close()
        if code == 0:
            return
        detail = _first_error(text) or f"exit status {code}"
        if any(hint in detail for hint in _UNREACHABLE_HINTS):
            raise BackendUnavailableError(setting, self.target, detail)
        raise BackupError(f"{self.what} failed: {detail}")

    def kill(self) -> None:
        """Stop the program (after a failure on our side)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._stderr.close()


def run_pg(
    args: Sequence[str], url: str | URL, what: str, setting: str, *, database: str | None = None
) -> None:
    """Run a PostgreSQL program against `url` and wait for it."""
    PgProcess(args, libpq_env(url, database=database), what, safe_url(url)).wait(setting)


def _first_error(text: str) -> str:
    """The most telling line of a PostgreSQL program's stderr, password-free."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if "error:" in line or "FATAL" in line or "ERROR" in line:
            return line[:400]
    return lines[-1][:400] if lines else ""


def start_dump(
    url: str | URL, target: Path, setting: str, bin_dir: str, snapshot: str | None = None
) -> PgProcess:
    """Start `pg_dump -Fc` of `url` into `target`.

    Custom format: compressed, and restorable in parallel. With `snapshot`, it sees exactly
    what the transaction that exported that snapshot sees.
    """
    args = [pg_program("pg_dump", bin_dir), "-Fc", "--no-password", "-f", str(target)]
    if snapshot:
        args.append(f"--snapshot={snapshot}")
    parsed = parse_url(url, setting)
    return PgProcess(args, libpq_env(parsed), "pg_dump", safe_url(parsed))


def restore_dump(
    dump: Path, url: str | URL, setting: str, bin_dir: str, *, replace: bool, jobs: int = 1
) -> None:
    """`pg_restore` a custom-format dump into the database of `url`, which must exist.

    `replace`: drop the dump's objects first, all in one transaction, so a failed restore
    leaves the database as it was. Otherwise the database is expected to be empty and the
    restore may use `jobs` parallel workers (the fast path for a new or scratch database).
    Ownership and grants are not restored: objects belong to the connecting user, so a
    dump restores on a server that lacks the original roles.
    """
    args = [
        pg_program("pg_restore", bin_dir),
        "--no-password",
        "--no-owner",
        "--no-privileges",
        "--exit-on-error",
    ]
    if replace:
        args += ["--clean", "--if-exists", "--single-transaction"]
    elif jobs > 1:
        args.append(f"--jobs={jobs}")
    parsed = parse_url(url, setting)
    args += ["--dbname", str(parsed.database), str(dump)]
    run_pg(args, parsed, "pg_restore", setting)
