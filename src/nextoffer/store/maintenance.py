"""Housekeeping writes: pruning old run records and old quarantined rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, delete, func, select

from nextoffer.store.runs import QUEUED, RUNNING
from nextoffer.store.schema import ContactHistory, Event, JobRun, QuarantinedRow, Transaction


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


RETAINED: dict[str, Any] = {
    "events": Event.__table__.c.ts,
    "transactions": Transaction.__table__.c.ts,
    "contact_history": ContactHistory.__table__.c.contacted_at,
}
"""Tables a retention setting applies to, with the time their rows age by."""


def purge_older(engine: Engine, table: str, before: datetime, *, dry_run: bool) -> int:
    """Delete (or, on a dry run, count) the rows of `table` older than `before`."""
    column = RETAINED[table]
    old = column < before
    with engine.begin() as conn:
        if dry_run:
            query = select(func.count()).select_from(column.table).where(old)
            return int(conn.execute(query).scalar_one())
        return int(conn.execute(delete(column.table).where(old)).rowcount)
