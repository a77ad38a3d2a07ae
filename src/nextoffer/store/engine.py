"""Engine factory for the URL in NEXTOFFER_DATABASE_URL, and waiting for the database."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from nextoffer.domain.errors import BackendUnavailableError, ConfigError
from nextoffer.domain.private_files import private_dir, private_file

DATABASE_SETTING = "NEXTOFFER_DATABASE_URL"


def safe_url(url: str | URL) -> str:
    """The URL with any password masked, fit for logs and error messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def parse_database_url(url: str | URL, setting: str) -> URL:
    """A parsed database URL, or a ConfigError naming `setting`."""
    try:
        return make_url(url)
    except ArgumentError:
        raise ConfigError(f"{setting}: not a database URL") from None


def _enable_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # Foreign keys are off by default in SQLite; WAL lets readers run beside a loading writer.
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _private_database_file(path: Path) -> None:
    """Create the SQLite file 0600 (in a 0700 folder when made here) before SQLite does.

    It holds personal data and password hashes. SQLite gives its -wal and -shm files the
    database file's mode, so they are private too.
    """
    if not path.parent.exists():
        private_dir(path.parent)
    if not path.exists():
        private_file(path)


def make_engine(
    database_url: str, *, pool_size: int = 5, setting: str = DATABASE_SETTING
) -> Engine:
    """An engine for `database_url`; creates a SQLite file (and folder) private if needed.

    `setting` names the variable the URL came from in configuration errors.
    """
    try:
        url = make_url(database_url)
    except ArgumentError:
        raise ConfigError(f"{setting}: not a database URL: {database_url!r}") from None
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
            _private_database_file(Path(url.database))
        engine = create_engine(url)
        event.listen(engine, "connect", _enable_sqlite_pragmas)
        return engine
    if url.get_backend_name() == "postgresql":
        if url.get_driver_name() != "psycopg":
            raise ConfigError(f"{setting}: use postgresql+psycopg://, got {safe_url(url)}")
        return create_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            # A host that stops answering must fail fast (the API then spools or falls back)
            # instead of hanging each request for the kernel's TCP timeout.
            connect_args={"connect_timeout": 3},
        )
    raise ConfigError(f"{setting}: unsupported database {url.get_backend_name()!r}")


def ping(engine: Engine) -> None:
    """Run `SELECT 1`; raises the driver's error (wrapped by SQLAlchemy) when it fails."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def is_database_down(exc: BaseException) -> bool:
    """True for errors meaning the database cannot be used now (so work must wait or spool).

    A pool timeout counts too: every connection is stuck on a database that does not answer.
    """
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeoutError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def has_table(engine: Engine, name: str) -> bool:
    """True when the database holds a table called `name` (e.g. migrations have run)."""
    return inspect(engine).has_table(name)


def wait_for_database(engine: Engine, timeout_s: float, interval_s: float = 0.5) -> None:
    """Block until a `SELECT 1` succeeds, or raise BackendUnavailableError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            ping(engine)
            return
        except OperationalError as exc:
            if time.monotonic() >= deadline:
                detail = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
                raise BackendUnavailableError(
                    DATABASE_SETTING,
                    safe_url(engine.url),
                    f"{detail} (waited {timeout_s:g} s)",
                ) from None
            time.sleep(interval_s)


def server_now(engine: Engine) -> datetime:
    """The database server's clock (PostgreSQL `now()`), aware UTC."""
    with engine.connect() as conn:
        found: datetime = conn.execute(text("SELECT now()")).scalar_one()
    return found.astimezone(UTC)


def server_setting(engine: Engine, name: str) -> str:
    """A PostgreSQL run-time setting (`SHOW name`), e.g. archive_mode."""
    if not re.fullmatch(r"[a-z_][a-z0-9_.]*", name):
        raise ValueError(f"not a setting name: {name!r}")
    with engine.connect() as conn:
        return str(conn.execute(text(f"SHOW {name}")).scalar_one())


def is_postgres(engine: Engine) -> bool:
    """True when the engine talks to PostgreSQL (COPY, advisory locks, pg_dump apply)."""
    return engine.dialect.name == "postgresql"
