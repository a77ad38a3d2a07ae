"""An ingest killed half way, then run again, ends exactly as one clean run would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from nextoffer.config import Settings
from nextoffer.ingest.sources import entity_for
from nextoffer.jobs.calls import run_ingest
from nextoffer.store.engine import make_engine
from nextoffer.store.migrate import upgrade
from nextoffer.store.schema import Base, JobRun
from tests.helpers import (
    clear_database,
    dump_all,
    model_snapshot,
    quarantine_csv_rows,
    schema_snapshot,
    write_world,
)

NEXTOFFER = Path(sys.executable).with_name("nextoffer")
POLL_DEADLINE_S = 120.0  # only reached when something is broken


def ingest_command(
    world: Path, database_url: str, var_dir: Path, block_bytes: int
) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXTOFFER_")}
    env.update(
        NEXTOFFER_DATABASE_URL=database_url,
        NEXTOFFER_VAR_DIR=str(var_dir),
        NEXTOFFER_INGEST_BLOCK_BYTES=str(block_bytes),
        NEXTOFFER_DB_WAIT_TIMEOUT_S="5",
    )
    return {"args": [str(NEXTOFFER), "ingest", str(world)], "env": env}


def count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(select(func.count()).select_from(Base.metadata.tables[table])).scalar_one()
        )


def run_statuses(engine: Engine) -> list[tuple[str, dict[str, int]]]:
    with engine.connect() as conn:
        return [
            (r.status, r.counts) for r in conn.execute(select(JobRun).order_by(JobRun.started_at))
        ]


def test_killed_ingest_then_rerun_equals_one_clean_run(database_url: str, tmp_path: Path) -> None:
    world = write_world(
        tmp_path / "world",
        customers=150,
        transactions_per_customer=3,
        events_per_customer=40,
        bad_every=53,
    )
    biggest = max(world.root.glob("*.csv"), key=lambda p: p.stat().st_size)
    entity = entity_for(biggest)
    assert entity is not None
    engine = make_engine(database_url)
    upgrade(engine)

    # The reference: one clean run, in one block per file.
    reference_settings = Settings(database_url=database_url, var_dir=tmp_path / "reference")
    reference = run_ingest(engine, reference_settings, world.root)
    expected = dump_all(engine)
    expected_files = quarantine_csv_rows(reference_settings.quarantine_dir)
    full = count(engine, entity.name)
    assert reference.rows_quarantined == sum(world.bad.values()) > 0
    clear_database(engine)

    # Small blocks: the biggest file takes about a hundred commits.
    assert biggest.stat().st_size > 100 * 4096
    var_dir = tmp_path / "var"
    with (tmp_path / "killed.log").open("wb") as log:
        proc = subprocess.Popen(
            **ingest_command(world.root, database_url, var_dir, 4096),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + POLL_DEADLINE_S
            while count(engine, entity.name) == 0:
                assert proc.poll() is None, (tmp_path / "killed.log").read_text()
                assert time.monotonic() < deadline, "no block of the biggest file was committed"
                time.sleep(0.005)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    # It really died in the middle: part of the biggest file stored, the run never finished.
    partial = count(engine, entity.name)
    assert 0 < partial < full, (partial, full)
    assert [status for status, _ in run_statuses(engine)] == ["running"]
    assert dump_all(engine) != expected

    # Run again to completion (in blocks of another size: lines, not blocks, key the state).
    settings = Settings(database_url=database_url, var_dir=var_dir, ingest_block_bytes=64 * 1024)
    again = run_ingest(engine, settings, world.root)

    assert dump_all(engine) == expected
    # Whatever the load did to indexes on the way (PostgreSQL rebuilds them), they are back.
    assert schema_snapshot(engine) == model_snapshot()
    assert quarantine_csv_rows(var_dir / "quarantine") == expected_files
    statuses = [status for status, _ in run_statuses(engine)]
    assert len(statuses) == 2
    assert statuses[0] != "succeeded"
    assert statuses[1] == "succeeded"
    assert (again.rows_read, again.rows_loaded, again.rows_quarantined) == (
        reference.rows_read,
        reference.rows_loaded,
        reference.rows_quarantined,
    )
    # Only what the killed run had not committed is new.
    assert 0 < again.rows_changed < reference.rows_changed
    engine.dispose()
