"""Every job by name (pipelines' and operations'), run one of a kind at a time and recorded."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from nextoffer.cache import make_cache
from nextoffer.domain.errors import NextOfferError
from nextoffer.pipelines.jobs import PIPELINE_JOBS, JobContext, Runner, run_job
from nextoffer.serving.kpis import compute_kpis
from nextoffer.serving.state import ServingState
from nextoffer.serving.warm import warm_cache, warm_popular
from nextoffer.store.locks import try_lock
from nextoffer.store.runs import (
    QUEUED,
    RUNNING,
    SUCCEEDED,
    fail_run,
    get_run,
    queue_run,
    recorded_run,
    utcnow,
)

log = logging.getLogger(__name__)


class JobConflictError(NextOfferError):
    """A job of the same kind is already running."""


def _cache_rebuild(context: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Refill the cache (NEXTOFFER_CACHE_URL) from the database: the seed's Redis rebuild."""
    state = ServingState(context.engine, context.registry)
    state.refresh()
    cache = make_cache(str(params.get("cache_url") or context.settings.cache_url))
    try:
        return dict(warm_cache(context.engine, cache, state, context.settings).counts())
    finally:
        cache.close()


def _fallback_refresh(context: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Recompute every segment's popular list into the cache (the fallback answers)."""
    cache = make_cache(context.settings.cache_url)
    try:
        return {"popular_lists": warm_popular(context.engine, cache)}
    finally:
        cache.close()


def _kpi_refresh(context: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """The hourly KPIs, kept as the run's counts (gauges and dashboards read the latest)."""
    return dict(compute_kpis(context.engine).as_counts())


def _backup(context: JobContext, params: dict[str, Any], run_id: str) -> dict[str, Any]:
    from nextoffer.ops.backup import create_backup

    return dict(create_backup(context.settings, run_id=run_id).counts())


def _backup_prune(context: JobContext, params: dict[str, Any], run_id: str) -> dict[str, Any]:
    from nextoffer.ops.backup import prune_backups

    return dict(prune_backups(context.settings, utcnow(), run_id=run_id).counts())


def _backup_verify(context: JobContext, params: dict[str, Any], run_id: str) -> dict[str, Any]:
    from nextoffer.ops.manifest import BackupError
    from nextoffer.ops.verify import verify_backup

    backup_id = params.get("backup_id")
    result = verify_backup(context.settings, str(backup_id) if backup_id else None, run_id=run_id)
    if not result.ok:
        # The run is recorded failed already; the task must fail too (a chain stops).
        raise BackupError(result.summary())
    return dict(result.counts())


OPS_JOBS: dict[str, Runner] = {
    "cache_rebuild": _cache_rebuild,
    "fallback_refresh": _fallback_refresh,
    "kpi_refresh": _kpi_refresh,
}
# Backups record their own runs (the CLI's `nextoffer backup ...` records them the same way).
SELF_RECORDED: dict[str, Callable[[JobContext, dict[str, Any], str], dict[str, Any]]] = {
    "backup": _backup,
    "backup_prune": _backup_prune,
    "backup_verify": _backup_verify,
}
JOBS: dict[str, Runner] = {**PIPELINE_JOBS, **OPS_JOBS}
ALL_KINDS = (*JOBS, *SELF_RECORDED)


def run_exclusive(
    context: JobContext,
    kind: str,
    params: Mapping[str, Any],
    run_id: str,
    after: Callable[[str], None] | None = None,
    recorded: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run a job under `run_id` unless a job of its kind is running anywhere.

    Safe to call again with the same run id (a broker may deliver a message twice): a run
    that succeeded returns its counts, one still running elsewhere is left alone. The lock
    is a PostgreSQL advisory lock (every host) or a file lock (SQLite, one host), released
    when its holder dies, so a killed worker never leaves a job locked. One job of a kind at
    a time is also what keeps the precompute fan-out free of deadlock (worker/fanout.py).
    """
    engine = context.engine
    before = get_run(engine, run_id)
    if before is not None and before.status == SUCCEEDED:
        return dict(before.counts or {})
    with try_lock(engine, f"job:{kind}", context.settings.var_dir / "locks") as held:
        if held and kind in SELF_RECORDED:
            if before is None:
                queue_run(engine, kind, run_id)  # the id can be polled before the job starts
            if recorded is not None:
                recorded()
            try:
                counts = SELF_RECORDED[kind](context, dict(params), run_id)
            except Exception as exc:
                # Refused before it recorded anything: the queued row must not wait forever.
                row = get_run(engine, run_id)
                if row is not None and row.status == QUEUED:
                    fail_run(engine, run_id, f"{type(exc).__name__}: {exc}")
                raise
            if after is not None:
                after(kind)
            return counts
        if held:
            return run_job(context, kind, params, run_id, after, recorded, runners=JOBS)
    now = get_run(engine, run_id)
    if now is not None and now.status in (RUNNING, SUCCEEDED):
        log.warning("job %s %s was delivered twice; it is %s elsewhere", kind, run_id, now.status)
        return dict(now.counts or {})
    message = f"a {kind} job is already running; this one was not started"
    with recorded_run(engine, kind, run_id):
        if recorded is not None:
            recorded()
        raise JobConflictError(message)
