"""Migrations: up to head matches the models, down to base leaves nothing, up again works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from nextoffer.store.engine import make_engine
from nextoffer.store.migrate import current_revision, downgrade, head_revision, upgrade
from nextoffer.store.schema import Base
from tests.helpers import BOOKKEEPING, model_snapshot, schema_snapshot

NEXTOFFER = Path(sys.executable).with_name("nextoffer")


def test_upgrade_downgrade_upgrade_round_trip(database_url: str) -> None:
    engine = make_engine(database_url)
    assert current_revision(engine) is None

    upgrade(engine)
    assert current_revision(engine) == head_revision()
    first = schema_snapshot(engine)
    assert first == model_snapshot()
    assert set(first) == set(Base.metadata.tables)
    with engine.connect() as conn:
        drift = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert drift == [], "the migrations do not build what the models describe"

    downgrade(engine, "base")
    inspector = inspect(engine)
    assert set(inspector.get_table_names()) <= BOOKKEEPING
    if engine.dialect.name == "postgresql":
        assert inspector.get_sequence_names() == []
    assert current_revision(engine) is None

    upgrade(engine, "head")
    assert schema_snapshot(engine) == first
    assert current_revision(engine) == head_revision()
    engine.dispose()


def nextoffer(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXTOFFER_")}
    env.update(NEXTOFFER_DATABASE_URL=database_url, NEXTOFFER_DB_WAIT_TIMEOUT_S="5", COLUMNS="80")
    return subprocess.run(
        [str(NEXTOFFER), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_upgrade_current_downgrade(database_url: str) -> None:
    head = head_revision()
    up = nextoffer("db", "upgrade", database_url=database_url)
    assert up.returncode == 0, up.stderr
    assert up.stdout.splitlines() == [f"db: {database_url} at revision {head}"]

    current = nextoffer("db", "current", database_url=database_url)
    assert current.returncode == 0, current.stderr
    assert current.stdout.strip() == f"db: revision {head} · up to date"

    engine = make_engine(database_url)
    assert set(inspect(engine).get_table_names()) == set(Base.metadata.tables) | BOOKKEEPING
    engine.dispose()

    down = nextoffer("db", "downgrade", "--revision", "base", database_url=database_url)
    assert down.returncode == 0, down.stderr
    assert down.stdout.strip() == "db: at revision base"
    engine = make_engine(database_url)
    assert set(inspect(engine).get_table_names()) <= BOOKKEEPING
    assert current_revision(engine) is None
    engine.dispose()


def test_cli_upgrade_against_an_unreachable_database_is_one_line() -> None:
    url = "postgresql+psycopg://postgres:hunter2@127.0.0.1:1/x"
    # The timeout guards against a hang; the command itself gives up after about a second.
    done = nextoffer("db", "upgrade", "--timeout", "1", database_url=url)

    assert done.returncode != 0
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: NEXTOFFER_DATABASE_URL: cannot reach ")
    assert "127.0.0.1:1" in lines[0]
    assert "Traceback" not in done.stderr
    assert "hunter2" not in done.stderr
