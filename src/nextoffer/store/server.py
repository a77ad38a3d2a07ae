"""Server-level PostgreSQL administration: does a database exist, create, drop, count tables.

These run on one-off connections to the server's `postgres` database (or the target), not
on the application's pool; bootstrap, backups, restores and drills use them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from nextoffer.domain.errors import BackendUnavailableError, ConfigError
from nextoffer.store.engine import parse_database_url, safe_url


def psycopg_url(url: str | URL, setting: str) -> URL:
    """`url` with the psycopg driver (MLflow's URLs name psycopg2 or no driver at all)."""
    parsed = parse_database_url(url, setting)
    if parsed.get_backend_name() != "postgresql":
        raise ConfigError(f"{setting}: not a PostgreSQL URL")
    return parsed.set(drivername="postgresql+psycopg")


def _admin_engine(url: URL) -> Engine:
    # NullPool: these are one-off administrative connections, not a pool to keep.
    return create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 10})


@contextlib.contextmanager
def _connecting(url: URL, setting: str) -> Iterator[None]:
    try:
        yield
    except OperationalError as exc:
        detail = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise BackendUnavailableError(setting, safe_url(url), detail) from None


def database_exists(url: str | URL, setting: str) -> bool:
    """True when the database named in `url` exists on its server."""
    parsed = psycopg_url(url, setting)
    admin = parsed.set(database="postgres")
    engine = _admin_engine(admin)
    try:
        with _connecting(admin, setting), engine.connect() as conn:
            found = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"),
                {"name": parsed.database},
            ).first()
        return found is not None
    finally:
        engine.dispose()


def create_database(url: str | URL, setting: str) -> None:
    """Create the database named in `url` (template0, owned by the connecting user)."""
    _on_server(url, setting, "CREATE DATABASE {name} TEMPLATE template0")


def drop_database(url: str | URL, setting: str) -> None:
    """Drop the database named in `url`, closing its sessions (a scratch database)."""
    _on_server(url, setting, "DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _on_server(url: str | URL, setting: str, statement: str) -> None:
    """Run a database-level `statement` ({name}: the quoted name) from the `postgres` DB."""
    parsed = psycopg_url(url, setting)
    admin = parsed.set(database="postgres")
    engine = _admin_engine(admin)
    name = '"' + str(parsed.database).replace('"', '""') + '"'
    try:
        with (
            _connecting(admin, setting),
            engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn,
        ):
            conn.exec_driver_sql(statement.format(name=name))
    finally:
        engine.dispose()


def user_table_count(url: str | URL, setting: str) -> int:
    """Tables outside PostgreSQL's own schemas; 0 when the database does not exist."""
    if not database_exists(url, setting):
        return 0
    parsed = psycopg_url(url, setting)
    engine = _admin_engine(parsed)
    try:
        with _connecting(parsed, setting), engine.connect() as conn:
            return int(
                conn.exec_driver_sql(
                    "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN "
                    "('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'"
                ).scalar()
                or 0
            )
    finally:
        engine.dispose()
