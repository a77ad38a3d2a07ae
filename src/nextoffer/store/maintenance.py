"""Housekeeping writes: pruning old run records and old quarantined rows."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, and_, delete, func, select

from nextoffer.store.runs import QUEUED, RUNNING
from nextoffer.store.schema import JobRun, QuarantinedRow


def prune_history(
    engine: Engine, *, runs_before: datetime, quarantine_before: datetime, dry_run: bool
) -> tuple[int, int]:
    """Delete (or, on a dry run, count) old finished runs and old quarantined rows.

    Returns (runs, quarantined rows). The newest run of every job is always kept, and runs
    still queued or running are never touched (their rows are the job lock's record).
    """
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
    return int(runs), int(rows)
