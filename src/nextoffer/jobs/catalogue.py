"""Every job by name: what it runs, its queue, its time limits and its schedule.

The CLI, the API (`POST /v1/jobs`), the console, the Celery worker and beat, and the
Airflow DAGs all read this one catalogue and start a job by its name here, through
`nextoffer.jobs.runner.run_exclusive`. A job's name is the name its runs have in
`job_runs`, in the metrics (`nextoffer_job_last_success_timestamp_seconds{job}`) and in
the dashboards. The pipelines, scoring and backup code each job calls is imported when the
job runs: this module stays light enough for the API process to import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nextoffer.domain.errors import ConfigError, UnknownJobError
from nextoffer.jobs.context import JobContext
from nextoffer.store.runs import RunHandle, utcnow

Runner = Callable[[JobContext, dict[str, Any], RunHandle], object]
"""A job: its context, its parameters and its run in; it puts its counts on the run (they
are recorded with it) and returns its own result for a caller in this process (the CLI)."""

QUEUES = ("etl", "training", "precompute", "ops")
"""Celery queues. `precompute` holds only precompute's chunks, never a whole job."""
SOFT_MARGIN_S = 300
"""A task gets a soft time limit (an exception it can record) this long before its hard one."""
QUEUE_LIMITS_S = {"etl": 3600, "training": 4 * 3600, "precompute": 3600, "ops": 3600}
"""Hard time limits of a task on each queue: a job's own default, and a chunk's."""


@dataclass(frozen=True)
class Schedule:
    """When a job runs by itself: a beat entry, the setting holding its crontab, what follows.

    `then` are the jobs started after it in one chain, each on its own queue; a failure
    (or a refused start) stops the rest.
    """

    entry: str
    setting: str
    then: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobSpec:
    """One job of the catalogue."""

    name: str
    run: Runner
    description: str
    queue: str = "ops"

    @property
    def hard_limit_s(self) -> int:
        """Seconds after which the job is killed: its queue's limit."""
        return QUEUE_LIMITS_S[self.queue]

    @property
    def schedule(self) -> Schedule | None:
        """When the job runs by itself (`SCHEDULES`), or None."""
        return SCHEDULES.get(self.name)

    @property
    def soft_limit_s(self) -> int:
        """Seconds after which the job is told to stop (and can record why)."""
        return self.hard_limit_s - SOFT_MARGIN_S


# --- the jobs ------------------------------------------------------------------------------


def _flag(params: dict[str, Any], name: str, default: bool) -> bool:
    value = params.get(name, default)
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _ingest(context: JobContext, params: dict[str, Any], run: RunHandle) -> object:
    """Load import files: `path` (a folder, a file or an s3:// prefix), or Airflow's `staged`.

    `mapping`: a mapping file to read `path` through (an operator's own export format).
    """
    from nextoffer.pipelines.etl import Staged, load_staged, read_mapping, stage_source

    engine, settings, progress = context.engine, context.settings, context.progress
    staged_params = params.get("staged")
    if isinstance(staged_params, dict):
        staged = Staged.from_dict(staged_params)
    else:
        path = params.get("path")
        if not path:
            raise ConfigError("an ingest job needs params.path: the folder or file to load")
        staged = stage_source(
            engine,
            settings,
            str(path),
            new_only=_flag(params, "new_only", False),
            mapping=read_mapping(params.get("mapping") or None),
        )
    total = progress.total
    result = load_staged(
        engine,
        settings,
        staged,
        run_id=run.run_id,
        on_start=None if total is None else lambda files: total(sum(f.size for f in files)),
        progress=progress.advance,
    )
    run.counts = result.counts()
    return result


def _features(context: JobContext, params: dict[str, Any], run: RunHandle) -> object:
    """Every customer's features and segment; `as_of` (ISO time) pins the clock."""
    from nextoffer.pipelines.features import run_features

    as_of = params.get("as_of")
    if isinstance(as_of, str):
        as_of = datetime.fromisoformat(as_of)
    if isinstance(as_of, datetime) and as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=UTC)
    result = run_features(context.engine, context.settings, as_of, run_id=run.run_id)
    run.counts = result.counts()
    return result


def _etl(context: JobContext, params: dict[str, Any], run: RunHandle) -> object:
    """Ingest then features: all of `path`, or the new files of the ingest source (nightly)."""
    from nextoffer.pipelines.nightly import nightly_steps

    engine, settings = context.engine, context.settings
    path = params.get("path")
    if path:
        from nextoffer.pipelines.etl import run_ingest
        from nextoffer.pipelines.features import run_features

        # A path given by hand or by the console's "Run ETL" (the ingest source) is read
        # through the job's `mapping`, else NEXTOFFER_INGEST_MAPPING, like the nightly.
        mapping = params.get("mapping") or settings.ingest_mapping or None
        ingested = run_ingest(engine, settings, str(path), run_id=run.run_id, mapping=mapping)
        features = run_features(engine, settings, run_id=run.run_id)
        run.counts = {
            "rows_read": ingested.rows_read,
            "rows_loaded": ingested.rows_loaded,
            "rows_quarantined": ingested.rows_quarantined,
            "rows_erased": ingested.rows_erased,
            "customers_featured": features.customers,
        }
        return None
    source = params.get("source") or None
    # Started by name without a path (the API, a schedule): the ingest source must be set.
    # `nextoffer etl nightly` passes `source` and gets the nightly's own message instead.
    if "source" not in params and not settings.ingest_source:
        raise ConfigError(
            "an etl job needs params.path (the folder or file to ingest) or "
            "NEXTOFFER_INGEST_SOURCE (where the nightly ETL finds new files)"
        )
    # Scheduled, precompute and the cache refill follow as jobs of their own in the chain;
    # `nextoffer etl nightly` asks for all four steps in one run (params.precompute).
    result = nightly_steps(
        engine,
        settings,
        context.models(),
        None if source is None else str(source),
        cache=_flag(params, "precompute", False),
        run_id=run.run_id,
    )
    run.counts = result.counts()
    return result


def _training(context: JobContext, params: dict[str, Any], run: RunHandle) -> object:
    """Train, evaluate, register (promote if better), score churn; `models`, `overrides`."""
    from nextoffer.pipelines.train import KINDS, TrainOverrides, run_training

    kinds = params.get("models") or list(KINDS)
    if isinstance(kinds, str):
        kinds = [k.strip() for k in kinds.split(",") if k.strip()]
    overrides = params.get("overrides")
    if isinstance(overrides, dict):
        overrides = TrainOverrides.from_dict(overrides)
    result = run_training(
        context.engine,
        context.settings,
        context.models(),
        kinds=kinds,
        overrides=overrides if isinstance(overrides, TrainOverrides) else None,
        score=_flag(params, "score", True),
        progress=context.progress.say,
        run_id=run.run_id,
    )
    run.counts = result.counts()
    return result


def _precompute(context: JobContext, params: dict[str, Any], run: RunHandle) -> object:
    """Every customer's offers with the champion, in chunks (on workers with a fan-out)."""
    from nextoffer.pipelines.precompute import run_precompute, uplift_for_ranking
    from nextoffer.scoring.champions import load_offer_champion

    champion = load_offer_champion(context.models())
    uplift = uplift_for_ranking(context.models(), context.settings)
    run_chunks = (
        None
        if context.fan_out is None
        else context.fan_out(champion.version, None if uplift is None else uplift.version)
    )
    result = run_precompute(
        context.engine, context.settings, champion, run_chunks=run_chunks, uplift=uplift
    )
    run.counts = {
        "customers": result.customers,
        "with_offers": result.with_offers,
        "chunks": result.chunks,
        "model_version": result.model_version,
        # The instant every row of this run carries (`precomputed_offers.computed_at`).
        "computed_at": None if result.computed_at is None else result.computed_at.isoformat(),
    }
    return result


def _cache_rebuild(context: JobContext, params: dict[str, Any], run: RunHandle) -> object:
    """Refill the cache (NEXTOFFER_CACHE_URL) from the database: the seed's Redis rebuild."""
    from nextoffer.cache import make_cache
    from nextoffer.serving.state import ServingState
    from nextoffer.serving.warm import warm_cache

    state = ServingState(context.engine, context.models())
    state.refresh()
    cache = make_cache(str(params.get("cache_url") or context.settings.cache_url))
    try:
        result = warm_cache(context.engine, cache, state, context.settings)
    finally:
        cache.close()
    run.counts = dict(result.counts())
    return result


def _fallback_refresh(context: JobContext, params: dict[str, Any], run: RunHandle) -> object:
    """Recompute every segment's popular list into the cache (the fallback answers)."""
    from nextoffer.cache import make_cache
    from nextoffer.serving.warm import warm_popular

    cache = make_cache(context.settings.cache_url)
    try:
        run.counts = {"popular_lists": warm_popular(context.engine, cache)}
    finally:
        cache.close()
    return None


def _kpi_refresh(context: JobContext, params: dict[str, Any], run: RunHandle) -> object:
    """The hourly KPIs, kept as the run's counts (gauges and dashboards read the latest)."""
    from nextoffer.serving.kpis import compute_kpis

    kpis = compute_kpis(context.engine)
    run.counts = dict(kpis.as_counts())
    return kpis


def _impact(context: JobContext, params: dict[str, Any], run: RunHandle) -> object:
    """Treated vs control over exposures whose window has closed, stored; `as_of` (ISO)."""
    from nextoffer.pipelines.impact import run_impact

    as_of = params.get("as_of")
    if isinstance(as_of, str):
        as_of = datetime.fromisoformat(as_of)
    if isinstance(as_of, datetime) and as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=UTC)
    result = run_impact(
        context.engine,
        context.settings,
        as_of if isinstance(as_of, datetime) else None,
        run_id=run.run_id,
    )
    run.counts = result.counts()
    return result


def _control_group(context: JobContext, params: dict[str, Any], run: RunHandle) -> object:
    """Sync `control_group` to the current share: who entered, who left; `today` (ISO date)."""
    from datetime import date

    from nextoffer.pipelines.control_group import run_control_group

    today = params.get("today")
    result = run_control_group(
        context.engine,
        context.settings,
        date.fromisoformat(today) if isinstance(today, str) else None,
    )
    run.counts = {
        "members": result.members,
        "entered": result.entered,
        "reentered": result.reentered,
        "left": result.left,
        "share": context.settings.control_group_share,
    }
    return result


def _backup(context: JobContext, params: dict[str, Any], run: RunHandle) -> object:
    """A new backup (database, registry, model files) under NEXTOFFER_BACKUP_URL."""
    from nextoffer.ops.backup import write_backup

    return write_backup(context.settings, run)


def _backup_prune(context: JobContext, params: dict[str, Any], run: RunHandle) -> object:
    """Grandfather-father-son retention over the backups, and the WAL they alone needed."""
    from nextoffer.ops.backup import prune_store

    now = params.get("now") or utcnow()
    if isinstance(now, str):
        now = datetime.fromisoformat(now)
    return prune_store(context.settings, now, run)


def _backup_verify(context: JobContext, params: dict[str, Any], run: RunHandle) -> object:
    """Check a backup (`backup_id`, default the newest) by restoring it into scratch."""
    from nextoffer.ops.verify import check_backup

    backup_id = params.get("backup_id")
    # A backup that fails its checks raises: the run is recorded failed, a chain stops.
    return check_backup(context.settings, str(backup_id) if backup_id else None, run)


def _dr_drill(context: JobContext, params: dict[str, Any], run: RunHandle) -> object:
    """Restore a backup into scratch, rebuild a scratch cache, serve one answer: RTO/RPO."""
    from nextoffer.ops.drill import drill_recovery

    backup_id = params.get("backup_id")
    return drill_recovery(
        context.settings,
        run,
        backup_id=str(backup_id) if backup_id else None,
        cache_url=str(params.get("cache_url") or ""),
        keep=_flag(params, "keep", False),
    )


def _retention(context: JobContext, params: dict[str, Any], run: RunHandle) -> object:
    """Purge events, transactions, contact history past their retention; `dry_run`."""
    from nextoffer.ops.data_retention import purge

    result = purge(
        context.engine, context.settings, utcnow(), dry_run=_flag(params, "dry_run", False)
    )
    run.counts = result.counts()
    return result


# New data or a new champion: every customer's offers again, then the cache from them.
_SERVE_AGAIN = ("precompute", "cache_rebuild")

SCHEDULES: dict[str, Schedule] = {
    # Seed: extract → clean → load → recalculate features → update the cache.
    # Impact last: measuring must never hold back the answers the night refreshes.
    "etl": Schedule("nightly-etl", "etl_cron", (*_SERVE_AGAIN, "impact")),
    # Seed: train → evaluate → register if improved → update inference.
    "training": Schedule("weekly-retraining", "retrain_cron", _SERVE_AGAIN),
    "fallback_refresh": Schedule("fallback-refresh", "fallback_precompute_cron"),
    "kpi_refresh": Schedule("kpi-refresh", "kpi_refresh_cron"),
    # A new base backup, then grandfather-father-son retention over all of them.
    "backup": Schedule("backup", "backup_cron", ("backup_prune",)),
    "backup_verify": Schedule("backup-verify", "backup_verify_cron"),
    # Daily, after the nightly ETL has brought new customers: who entered or left the group.
    "control_group": Schedule("control-group", "control_group_cron"),
    # Daily: a no-op until a NEXTOFFER_RETENTION_*_MONTHS is set; a retention too short
    # for the models, impact or contact caps fails the run, so the alert names it.
    "retention": Schedule("retention", "retention_cron"),
}
"""The jobs that run by themselves, by name."""

JOBS: dict[str, JobSpec] = {
    spec.name: spec
    for spec in (
        JobSpec(
            "etl", _etl, "ingest (a path, or the ingest source's new files) then features", "etl"
        ),
        JobSpec("ingest", _ingest, "validate and load import files; bad rows to quarantine", "etl"),
        JobSpec("features", _features, "every customer's features and segment", "etl"),
        JobSpec(
            "training",
            _training,
            "train, evaluate, register, promote if better, score churn",
            "training",
        ),
        # A coordinator that waits for its chunks: on `ops`, its chunks on `precompute`
        # (worker/fanout.py says why this cannot deadlock).
        JobSpec(
            "precompute",
            _precompute,
            "every customer's offers with the champion into precomputed_offers",
            "ops",
        ),
        JobSpec("cache_rebuild", _cache_rebuild, "refill the cache from the database"),
        JobSpec(
            "fallback_refresh", _fallback_refresh, "each segment's popular list into the cache"
        ),
        JobSpec(
            "impact",
            _impact,
            "treated vs control (the control group) over exposures whose window has closed",
        ),
        JobSpec(
            "kpi_refresh", _kpi_refresh, "the KPIs of the last 30 days, kept as the run's counts"
        ),
        JobSpec(
            "backup", _backup, "a new backup of the database, the registry and the model files"
        ),
        JobSpec("backup_prune", _backup_prune, "delete the backups retention does not keep"),
        JobSpec(
            "backup_verify",
            _backup_verify,
            "restore a backup into scratch and compare it with its manifest",
        ),
        JobSpec("dr_drill", _dr_drill, "rehearse a recovery and measure RTO and RPO"),
        JobSpec(
            "control_group",
            _control_group,
            "record who entered or left the universal control group at the current share",
        ),
        JobSpec(
            "retention",
            _retention,
            "purge events, transactions and contact history older than their retention",
        ),
    )
}
"""The catalogue, in the order the docs list it."""

ALL_KINDS = tuple(JOBS)
"""Every job name: what `POST /v1/jobs` accepts and a worker runs."""

CONSOLE_JOBS = ("etl", "training", "precompute")
"""The jobs the console offers a button for."""


def job_spec(name: str) -> JobSpec:
    """The job called `name`; UnknownJobError for a name the catalogue does not have."""
    spec = JOBS.get(name)
    if spec is None:
        raise UnknownJobError(f"unknown job {name!r}; jobs: {', '.join(JOBS)}")
    return spec


def job_queue(name: str) -> str:
    """The queue job `name` runs on (`ops` for a name the catalogue does not have)."""
    spec = JOBS.get(name)
    return "ops" if spec is None else spec.queue


def time_limits(queue: str) -> tuple[int, int]:
    """(soft, hard) time limits in seconds for a task on `queue` (a precompute chunk's)."""
    hard = QUEUE_LIMITS_S.get(queue, QUEUE_LIMITS_S["ops"])
    return hard - SOFT_MARGIN_S, hard
