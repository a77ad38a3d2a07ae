"""Operator commands through the real CLI: doctor, bootstrap, cleanup."""

from __future__ import annotations

import os
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from nextoffer.cache import MemoryCache
from nextoffer.ops.cleanup import cleanup
from nextoffer.store import migrate
from nextoffer.store.engine import make_engine
from nextoffer.store.schema import ApiKey, JobRun, QuarantinedRow
from tests.conftest import PG_HOST, PG_PORT, require_service
from tests.e2e.server import NEXTOFFER, free_port


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NEXTOFFER, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def clean_env(var_dir: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEXTOFFER_", "AWS_"))}
    env.update(
        NEXTOFFER_VAR_DIR=str(var_dir),
        NEXTOFFER_DATABASE_URL=f"sqlite:///{var_dir / 'nextoffer.db'}",
        NEXTOFFER_REGISTRY_URI=f"sqlite:///{var_dir / 'mlflow.db'}",
        NEXTOFFER_ARTIFACTS_URL=f"file://{var_dir / 'artifacts'}",
        NEXTOFFER_BACKUP_URL=f"file://{var_dir / 'backups'}",
        NEXTOFFER_DB_WAIT_TIMEOUT_S="2",
    )
    env.update({f"NEXTOFFER_{k.upper()}": v for k, v in settings.items()})
    return env


def test_doctor_names_every_setting_that_points_at_something_dead(tmp_path: Path) -> None:
    dead = [free_port() for _ in range(5)]
    env = clean_env(
        tmp_path,
        database_url=f"postgresql+psycopg://postgres@127.0.0.1:{dead[0]}/nextoffer",
        cache_url=f"redis://127.0.0.1:{dead[1]}/0",
        broker_url=f"amqp://guest:guest@127.0.0.1:{dead[2]}//",
        registry_uri=f"http://127.0.0.1:{dead[3]}",
        backup_url="s3://backups/nextoffer",
        s3_endpoint_url=f"http://127.0.0.1:{dead[4]}",
    )
    env.update(
        AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1"
    )
    done = cli(env, "doctor")
    assert done.returncode == 1, done.stdout + done.stderr
    lines = {line.split()[1]: line for line in done.stdout.splitlines() if line.strip()}
    for name, setting, port in [
        ("database", "NEXTOFFER_DATABASE_URL", dead[0]),
        ("cache", "NEXTOFFER_CACHE_URL", dead[1]),
        ("broker", "NEXTOFFER_BROKER_URL", None),
        ("registry", "NEXTOFFER_REGISTRY_URI", dead[3]),
    ]:
        assert lines[name].startswith("DEAD") and setting in lines[name], lines[name]
        if port is not None:
            assert str(port) in lines[name]
    backup = next(line for line in done.stdout.splitlines() if "backup store" in line)
    assert backup.startswith("DEAD") and "NEXTOFFER_BACKUP_URL" in backup
    # What is alive is said to be alive, and the summary names each dead setting once.
    assert next(line for line in done.stdout.splitlines() if "disk space" in line).startswith("ok")
    summary = done.stderr.strip().splitlines()[-1]
    for setting in (
        "NEXTOFFER_DATABASE_URL",
        "NEXTOFFER_CACHE_URL",
        "NEXTOFFER_BROKER_URL",
        "NEXTOFFER_REGISTRY_URI",
        "NEXTOFFER_BACKUP_URL",
    ):
        assert summary.count(setting) == 1, summary
    assert "password" not in done.stdout and "guest:guest" not in done.stdout


def test_bootstrap_then_doctor_on_a_fresh_postgresql(tmp_path: Path) -> None:
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    import psycopg

    name = f"nextoffer_boot_{uuid.uuid4().hex[:10]}"
    url = f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    env = clean_env(tmp_path, database_url=url)
    try:
        first = cli(env, "bootstrap")
        assert first.returncode == 0, first.stderr
        key = first.stdout.strip()
        assert key and "\n" not in key
        assert "created the database" in first.stderr
        assert "created the first admin key" in first.stderr
        again = cli(env, "bootstrap")
        assert again.returncode == 0 and again.stdout == "", again.stderr
        assert "nothing to do" in again.stderr
        engine = make_engine(url)
        assert migrate.current_revision(engine) == migrate.head_revision()
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(ApiKey)).scalar_one() == 1
        engine.dispose()
        doctor = cli(env, "doctor")
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert "all 9 checks passed" in doctor.stdout
    finally:
        admin = f"host={PG_HOST} port={PG_PORT} user=postgres dbname=postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("dry_run", [True, False])
def test_cleanup_keeps_the_newest_run_of_each_job_and_anything_running(
    database_url: str, tmp_path: Path, dry_run: bool
) -> None:
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    now = datetime(2026, 11, 23, 12, tzinfo=UTC)
    old = now - timedelta(days=200)
    runs = [
        ("etl-old", "etl", "succeeded", old),
        ("etl-older", "etl", "failed", old - timedelta(days=1)),
        ("etl-new", "etl", "succeeded", now - timedelta(days=1)),
        ("backup-only", "backup", "succeeded", old),  # the newest backup run: kept
        ("train-stuck", "training", "running", old),  # running: kept
        ("train-new", "training", "succeeded", now),
    ]
    with engine.begin() as conn:
        for run_id, job, status, at in runs:
            conn.execute(
                insert(JobRun).values(
                    run_id=run_id, job=job, status=status, started_at=at, counts={}
                )
            )
        for line, at in ((1, old), (2, now)):
            conn.execute(
                insert(QuarantinedRow).values(
                    entity="customers",
                    source="c.csv",
                    source_sha256="a" * 64,
                    line=line,
                    reason="bad",
                    raw="x",
                    run_id="etl-old",
                    quarantined_at=at,
                )
            )
    quarantine = tmp_path / "quarantine"
    quarantine.mkdir()
    stale_file, fresh_file = quarantine / "old.csv", quarantine / "new.csv"
    for path, at in ((stale_file, old), (fresh_file, now)):
        path.write_text("line,reason,raw\n")
        os.utime(path, (at.timestamp(), at.timestamp()))
    cache = MemoryCache()
    cache.set("offers:stamp1.v1:C1", "[]")
    cache.set("offers:stamp2.v2:C1", "[]")
    cache.set("user:segment:C1", "{}")

    result = cleanup(
        engine,
        cache,
        quarantine,
        now=now,
        keep_runs_days=90,
        keep_quarantine_days=30,
        current_stamp="stamp2",
        dry_run=dry_run,
    )
    assert (
        result.runs,
        result.quarantined_rows,
        result.quarantine_files,
        result.cache_entries,
    ) == (
        2,
        1,
        1,
        1,
    )
    with engine.connect() as conn:
        left = set(conn.execute(select(JobRun.run_id)).scalars())
        lines = set(conn.execute(select(QuarantinedRow.line)).scalars())
    if dry_run:
        assert left == {r[0] for r in runs} and lines == {1, 2} and stale_file.exists()
        assert cache.get("offers:stamp1.v1:C1") == "[]"
    else:
        assert left == {"etl-new", "backup-only", "train-stuck", "train-new"}
        assert lines == {2}
        assert not stale_file.exists() and fresh_file.exists()
        assert cache.get("offers:stamp1.v1:C1") is None
        assert cache.get("offers:stamp2.v2:C1") == "[]" and cache.get("user:segment:C1") == "{}"
    engine.dispose()
