"""`nextoffer cleanup`: old run records, old quarantine rows and files, stale cache entries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, and_, delete, func, select

from nextoffer.cache import keys
from nextoffer.cache.base import Cache
from nextoffer.store.runs import QUEUED, RUNNING
from nextoffer.store.schema import JobRun, QuarantinedRow


@dataclass(frozen=True)
class CleanupResult:
    """How much was (or, on a dry run, would be) removed."""

    runs: int
    quarantined_rows: int
    quarantine_files: int
    cache_entries: int
    dry_run: bool


def cleanup(
    engine: Engine,
    cache: Cache,
    quarantine_dir: Path,
    *,
    now: datetime,
    keep_runs_days: int,
    keep_quarantine_days: int,
    current_stamp: str | None,
    dry_run: bool = False,
) -> CleanupResult:
    """Remove what has outlived its use; the newest run of every job is always kept.

    Runs still queued or running are never touched (their rows are the job lock's record).
    Cached offers whose stamp is not `current_stamp` can never be read again (the stamp is
    in the key), so they are dropped early instead of waiting for their TTL.
    """
    runs_before = now - timedelta(days=keep_runs_days)
    quarantine_before = now - timedelta(days=keep_quarantine_days)
    newest = (
        select(JobRun.job, func.max(JobRun.started_at).label("at")).group_by(JobRun.job).subquery()
    )
    newest_ids = select(JobRun.run_id).join(
        newest, and_(JobRun.job == newest.c.job, JobRun.started_at == newest.c.at)
    )
    old_runs = and_(
        JobRun.started_at < runs_before,
        JobRun.status.not_in((QUEUED, RUNNING)),
        JobRun.run_id.not_in(newest_ids),
    )
    old_rows = QuarantinedRow.quarantined_at < quarantine_before
    with engine.begin() as conn:
        runs = conn.execute(select(func.count()).select_from(JobRun).where(old_runs)).scalar_one()
        rows = conn.execute(
            select(func.count()).select_from(QuarantinedRow).where(old_rows)
        ).scalar_one()
        if not dry_run:
            conn.execute(delete(JobRun).where(old_runs))
            conn.execute(delete(QuarantinedRow).where(old_rows))
    files = [
        path
        for path in (quarantine_dir.glob("*.csv") if quarantine_dir.is_dir() else [])
        if datetime.fromtimestamp(path.stat().st_mtime, tz=now.tzinfo) < quarantine_before
    ]
    if not dry_run:
        for path in files:
            path.unlink(missing_ok=True)
    stale = 0
    if current_stamp is not None:
        stale = _drop_stale_offers(cache, current_stamp, dry_run)
    return CleanupResult(int(runs), int(rows), len(files), stale, dry_run)


def _drop_stale_offers(cache: Cache, current_stamp: str, dry_run: bool) -> int:
    """Offers cached under any stamp but the current one."""
    keep = f"{keys.OFFERS_PREFIX}{current_stamp}."
    stale = [k for k in cache.keys_with_prefix(keys.OFFERS_PREFIX) if not k.startswith(keep)]
    if stale and not dry_run:
        cache.delete(*stale)
    return len(stale)
