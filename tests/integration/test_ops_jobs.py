"""Backups as jobs of the catalogue: one run record each, failures fail the job."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from nextoffer.config import Settings
from nextoffer.jobs.catalogue import ALL_KINDS
from nextoffer.jobs.context import JobContext
from nextoffer.jobs.runner import run_exclusive
from nextoffer.ops.manifest import BackupError
from nextoffer.pipelines.etl import run_ingest
from nextoffer.registry.mlflow_registry import ModelRegistry
from nextoffer.store.engine import make_engine
from nextoffer.store.migrate import upgrade
from nextoffer.store.schema import JobRun
from tests.helpers import write_world


def test_backup_jobs_record_one_run_each_and_a_bad_backup_fails_verify(
    database_url: str, tmp_path: Path
) -> None:
    assert {"backup", "backup_prune", "backup_verify", "cache_rebuild", "kpi_refresh"} <= set(
        ALL_KINDS
    )
    settings = Settings(
        database_url=database_url,
        var_dir=tmp_path / "var",
        registry_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifacts_url=f"file://{tmp_path / 'artifacts'}",
        backup_url=f"file://{tmp_path / 'backups'}",
    )
    engine = make_engine(database_url)
    upgrade(engine)
    run_ingest(engine, settings, write_world(tmp_path / "world", customers=30).root)
    context = JobContext(engine, settings, ModelRegistry.from_settings(settings))

    backup_run, verify_run, prune_run, kpi_run = (str(uuid.uuid4()) for _ in range(4))
    made = run_exclusive(context, "backup", {}, backup_run)
    checked = run_exclusive(context, "backup_verify", {}, verify_run)
    assert checked["ok"] is True and checked["backup_id"] == made["backup_id"]
    run_exclusive(context, "backup_prune", {}, prune_run)
    kpis = run_exclusive(context, "kpi_refresh", {}, kpi_run)
    assert kpis["customers"] == 30

    with engine.connect() as conn:
        rows = conn.execute(select(JobRun.run_id, JobRun.job, JobRun.status)).all()
    mine = {
        r.run_id: (r.job, r.status)
        for r in rows
        if r.run_id in {backup_run, verify_run, prune_run, kpi_run}
    }
    assert mine == {
        backup_run: ("backup", "succeeded"),
        verify_run: ("backup_verify", "succeeded"),
        prune_run: ("backup_prune", "succeeded"),
        kpi_run: ("kpi_refresh", "succeeded"),
    }
    # One record per job: the catalogue's id is the backup's own run id.
    assert sum(1 for r in rows if r.job == "backup") == 1

    # A damaged backup: verify fails the job, and its one record says so.
    [stored] = [
        p for p in (tmp_path / "backups").rglob("*") if p.is_file() and p.name.startswith("db")
    ]
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    failed_run = str(uuid.uuid4())
    with pytest.raises(BackupError, match="SHA-256"):
        run_exclusive(context, "backup_verify", {}, failed_run)
    with engine.connect() as conn:
        status = (
            conn.execute(select(JobRun.status).where(JobRun.run_id == failed_run)).scalars().all()
        )
    assert status == ["failed"]
    engine.dispose()
