"""Jobs as Python calls with typed arguments, for the CLI, benchmarks and tests.

Each goes through `execute` under its catalogue name (the job's lock, its one run record)
and returns the job's own result, as the pipeline or backup function made it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, cast

from nextoffer.config import Settings
from nextoffer.jobs.context import JobContext, Progress
from nextoffer.jobs.runner import execute
from nextoffer.store import Engine

if TYPE_CHECKING:
    from nextoffer.ops.backup import PruneResult
    from nextoffer.ops.data_retention import RetentionResult
    from nextoffer.ops.drill import DrillResult
    from nextoffer.ops.manifest import Manifest
    from nextoffer.ops.verify import VerifyResult
    from nextoffer.pipelines.etl import IngestResult
    from nextoffer.pipelines.features import FeaturesResult
    from nextoffer.pipelines.impact import ImpactRunResult
    from nextoffer.pipelines.nightly import NightlyResult
    from nextoffer.pipelines.train import TrainOverrides, TrainResult
    from nextoffer.registry.mlflow_registry import ModelRegistry


def run_ingest(
    engine: Engine,
    settings: Settings,
    path: str | Path,
    *,
    progress: Progress | None = None,
    new_only: bool = False,
    mapping: str | Path | None = None,
) -> IngestResult:
    """The `ingest` job: every import file of a folder, a file or an s3:// prefix.

    `mapping`: a mapping file that says how to read an operator's own export.
    """
    context = JobContext(engine, settings, progress=progress or Progress())
    params = {"path": str(path), "new_only": new_only, "mapping": str(mapping or "")}
    done = execute(context, "ingest", params)
    return cast("IngestResult", done.result)


def run_features(
    engine: Engine, settings: Settings, as_of: datetime | None = None
) -> FeaturesResult:
    """The `features` job: every customer's features and segment as of `as_of`."""
    done = execute(JobContext(engine, settings), "features", {"as_of": as_of})
    return cast("FeaturesResult", done.result)


def run_impact(
    engine: Engine, settings: Settings, as_of: datetime | None = None
) -> ImpactRunResult:
    """The `impact` job: treated vs control over exposures whose window has closed, stored."""
    done = execute(JobContext(engine, settings), "impact", {"as_of": as_of})
    return cast("ImpactRunResult", done.result)


def run_retention(engine: Engine, settings: Settings, *, dry_run: bool = False) -> RetentionResult:
    """The `retention` job: purge events, transactions, contact history past their retention."""
    done = execute(JobContext(engine, settings), "retention", {"dry_run": dry_run})
    return cast("RetentionResult", done.result)


def run_training(
    engine: Engine,
    settings: Settings,
    registry: ModelRegistry | None = None,
    *,
    kinds: Sequence[str] | None = None,
    overrides: TrainOverrides | None = None,
    score: bool = True,
    progress: Progress | None = None,
) -> TrainResult:
    """The `training` job: train, evaluate, register (promote if better), score churn.

    `kinds` default to every model kind; `registry` to the one the settings name.
    """
    context = JobContext(engine, settings, registry, progress=progress or Progress())
    params = {"models": list(kinds or ()), "overrides": overrides, "score": score}
    return cast("TrainResult", execute(context, "training", params).result)


def run_nightly_etl(
    engine: Engine,
    settings: Settings,
    source: str | None = None,
    *,
    registry: ModelRegistry | None = None,
) -> NightlyResult:
    """The `etl` job as the nightly runs it by hand: new files → load → features → precompute.

    `source` defaults to NEXTOFFER_INGEST_SOURCE. A night with no new files records its
    run and changes no data.
    """
    context = JobContext(engine, settings, registry)
    done = execute(context, "etl", {"source": source, "precompute": True})
    return cast("NightlyResult", done.result)


def create_backup(settings: Settings, *, run_id: str | None = None) -> Manifest:
    """The `backup` job: database, registry and recent model files to NEXTOFFER_BACKUP_URL."""
    from nextoffer.ops.backup import live_engine

    engine = live_engine(settings)  # a database without nextoffer's tables: one clear error
    try:
        return cast("Manifest", execute(JobContext(engine, settings), "backup", {}, run_id).result)
    finally:
        engine.dispose()


def prune_backups(settings: Settings, now: datetime, *, dry_run: bool = False) -> PruneResult:
    """The `backup_prune` job at `now`; a dry run deletes nothing and is no job run."""
    from nextoffer.ops.backup import live_engine, prune_store

    if dry_run:
        return prune_store(settings, now, None, dry_run=True)
    engine = live_engine(settings)
    try:
        done = execute(JobContext(engine, settings), "backup_prune", {"now": now})
        return cast("PruneResult", done.result)
    finally:
        engine.dispose()


def verify_backup(settings: Settings, backup_id: str | None) -> VerifyResult:
    """The `backup_verify` job; a backup that fails its checks is a failed run, returned."""
    from nextoffer.ops.backup import backup_store, live_engine
    from nextoffer.ops.manifest import pick_manifest
    from nextoffer.ops.verify import BackupVerifyError

    # A backup id that names nothing is the caller's mistake, reported before any run.
    manifest = pick_manifest(backup_store(settings), backup_id)
    engine = live_engine(settings)
    try:
        done = execute(
            JobContext(engine, settings), "backup_verify", {"backup_id": manifest.backup_id}
        )
    except BackupVerifyError as failed:
        return failed.result
    finally:
        engine.dispose()
    return cast("VerifyResult", done.result)


def run_drill(
    settings: Settings, *, backup_id: str | None = None, cache_url: str = "", keep: bool = False
) -> DrillResult:
    """The `dr_drill` job: restore a backup into scratch, serve from it, measure RTO/RPO."""
    from nextoffer.ops.backup import live_engine

    engine = live_engine(settings)
    params = {"backup_id": backup_id, "cache_url": cache_url, "keep": keep}
    try:
        return cast("DrillResult", execute(JobContext(engine, settings), "dr_drill", params).result)
    finally:
        engine.dispose()
