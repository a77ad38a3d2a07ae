"""Private Redis and PostgreSQL servers as real processes, for fault tests that stop them.

Each runs on a free port with its files in a private folder, so a test may kill and restart
it without touching the shared services other tests use. `require_program` skips a test
locally when a server program (or root, for PostgreSQL) is missing and fails it under CI.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import IN_CI, port_open
from tests.e2e.server import free_port

PG_USER = "postgres"


def require(condition: bool, message: str) -> None:
    """Skip (locally) or fail (CI) when something a fault test needs is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{message} (CI=true: a missing prerequisite is a failure)")
    pytest.skip(message)


def require_program(name: str, *candidates: Path) -> str:
    """The path of program `name`: on PATH, else the first of `candidates` that exists."""
    found = shutil.which(name) or next((str(c) for c in candidates if c.is_file()), None)
    require(found is not None, f"{name} is not installed")
    assert found is not None
    return found


def _wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} within {timeout_s} s")


@dataclass
class RedisServer:
    """`redis-server` on a free port without persistence; stop() and start() at will."""

    program: str
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The cache URL (database 0)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start on `port` (the same one after a stop) and wait until it accepts connections."""
        command = [
            self.program,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        process = self.process
        _wait_until(
            lambda: process.poll() is not None or port_open("127.0.0.1", self.port),
            10,
            f"redis-server did not listen on {self.port}",
        )
        if process.poll() is not None:
            raise AssertionError(f"redis-server exited:\n{self.log_tail()}")
        return self

    def stop(self) -> None:
        """SIGTERM and wait (SIGKILL after 10 s); the port is closed when this returns."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the server's output."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@dataclass
class PostgresCluster:
    """A throwaway PostgreSQL cluster run as user `postgres` (initdb, pg_ctl), trust auth.

    Its folder is made with `tempfile.mkdtemp` (pytest's tmp_path is private to root, which
    `postgres` cannot enter) and removed by `destroy()`.
    """

    bin_dir: Path
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="nextoffer-pg-")))
    port: int = field(default_factory=free_port)

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        """The server log."""
        return self.root / "server.log"

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL for `database` over TCP."""
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{database}"

    @property
    def conninfo(self) -> str:
        """A libpq connection string for the `postgres` database."""
        return f"host=127.0.0.1 port={self.port} user={PG_USER} dbname=postgres"

    def _as_postgres(self, *args: str, timeout_s: float = 60) -> None:
        done = subprocess.run(
            ["runuser", "-u", PG_USER, "--", *args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            cwd=self.root,
        )
        if done.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}\n"
                f"{self.log_tail()}"
            )

    def init(self) -> PostgresCluster:
        """initdb: trust auth, no fsync (a test cluster is thrown away)."""
        self.root.chmod(0o755)
        shutil.chown(self.root, PG_USER, PG_USER)
        self._as_postgres(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            PG_USER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        return self

    def standby_of(self, primary: PostgresCluster) -> PostgresCluster:
        """pg_basebackup of the running `primary` with -R: a streaming standby once started.

        Settings made with ALTER SYSTEM on the primary come along (postgresql.auto.conf).
        """
        # bin_dir may hold links to the server programs only (pg_ctl -> its version's folder).
        folders = (self.bin_dir, (self.bin_dir / "pg_ctl").resolve().parent)
        program = next(f / "pg_basebackup" for f in folders if (f / "pg_basebackup").exists())
        self.root.chmod(0o755)
        shutil.chown(self.root, PG_USER, PG_USER)
        self._as_postgres(
            str(program),
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            PG_USER,
            "-D",
            str(self.data_dir),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            "--no-sync",
        )
        return self

    def start(self) -> None:
        """pg_ctl start on 127.0.0.1:`port`, socket in the cluster folder; waits until up."""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off"
        )
        self._as_postgres(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
            timeout_s=90,
        )

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop; waits until the server is gone. Nothing when it is not running."""
        if not (self.data_dir / "postmaster.pid").exists():
            return
        self._as_postgres(
            str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"
        )

    def destroy(self) -> None:
        """Stop at once (if running) and remove every file."""
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the server log."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def postgres_bin_dir() -> Path:
    """The folder holding initdb and pg_ctl; skips (fails in CI) without them or root."""
    # Debian and Ubuntu keep the server programs off PATH, one folder per major version.
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdecimal() else 0,
        reverse=True,
    )
    initdb = require_program("initdb", *versions)
    bin_dir = Path(initdb).parent
    require((bin_dir / "pg_ctl").exists(), f"pg_ctl is not installed beside {initdb}")
    require(shutil.which("runuser") is not None, "runuser is not installed")
    require(os.geteuid() == 0, "a private PostgreSQL cluster needs root (runuser -u postgres)")
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        require(False, f"there is no {PG_USER} user")
    return bin_dir
