"""Job-run reads: the newest runs, keyset pages of them, and each job's freshness."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select

from nextoffer.domain.results import from_attributes
from nextoffer.store.reads._sql import Bind, connect, first_row
from nextoffer.store.runs import FAILED, SUCCEEDED
from nextoffer.store.schema import JobRun

# Job names as recorded in job_runs (nextoffer.jobs.catalogue). Data is fresh after an
# `etl` or an `ingest` run, whichever came last.
ETL_JOBS = ("ingest", "etl")
TRAINING_JOBS = ("training",)
BACKUP_JOBS = ("backup",)
FRESHNESS_JOBS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ETL / ingest", ETL_JOBS),
    # An `etl` run computes features too (or finds nothing new, which leaves them current).
    ("features", ("features", "etl")),
    ("training", TRAINING_JOBS),
    ("precompute", ("precompute",)),
    ("backup", BACKUP_JOBS),
    ("backup verify", ("backup_verify",)),
)


@dataclass(frozen=True)
class RunView:
    """One job run as the console lists it."""

    run_id: str
    job: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    counts: dict[str, Any]
    message: str | None

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to end; None while unfinished."""
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


def _counts(stored: Any) -> dict[str, Any]:
    return stored if isinstance(stored, dict) else {}


def run_by_id(bind: Bind, run_id: str) -> RunView | None:
    """One run by its id, or None."""
    query = select(JobRun).where(JobRun.run_id == run_id)
    return first_row(bind, query, RunView, counts=_counts)


def latest_run(bind: Bind, jobs: Sequence[str], status: str | None = None) -> RunView | None:
    """The newest run of any of `jobs` (with `status` when given), or None."""
    query = select(JobRun).where(JobRun.job.in_(jobs)).order_by(JobRun.started_at.desc()).limit(1)
    if status is not None:
        query = query.where(JobRun.status == status)
    return first_row(bind, query, RunView, counts=_counts)


def runs_page(
    bind: Bind,
    *,
    job: str | None = None,
    before: tuple[datetime, str] | None = None,
    limit: int = 25,
) -> list[RunView]:
    """Runs newest first, `limit` of them, after the (started_at, run_id) key `before`."""
    query = select(JobRun).order_by(JobRun.started_at.desc(), JobRun.run_id.desc()).limit(limit)
    if job is not None:
        query = query.where(JobRun.job == job)
    if before is not None:
        started, run_id = before
        query = query.where(
            or_(
                JobRun.started_at < started,
                and_(JobRun.started_at == started, JobRun.run_id < run_id),
            )
        )
    with connect(bind) as conn:
        return [from_attributes(RunView, row, counts=_counts) for row in conn.execute(query)]


def job_names(bind: Bind) -> list[str]:
    """Every job name that has a run (for the filter)."""
    with connect(bind) as conn:
        return sorted(str(n) for n in conn.execute(select(JobRun.job).distinct()).scalars())


def last_successes(bind: Bind, jobs: Sequence[str] | None = None) -> dict[str, datetime]:
    """When each job (of `jobs`, default all) last finished successfully, by job name.

    The freshness that staleness alerts watch and that the serving state stamps itself with.
    """
    query = (
        select(JobRun.job, func.max(JobRun.finished_at))
        .where(JobRun.status == SUCCEEDED)
        .group_by(JobRun.job)
        .order_by(JobRun.job)
    )
    if jobs is not None:
        query = query.where(JobRun.job.in_(jobs))
    with connect(bind) as conn:
        return {str(job): at for job, at in conn.execute(query) if at is not None}


def last_outcomes(bind: Bind) -> dict[str, bool]:
    """Whether each job's most recent finished run succeeded."""
    newest = (
        select(JobRun.job, func.max(JobRun.finished_at).label("at"))
        .where(JobRun.status.in_((SUCCEEDED, FAILED)))
        .group_by(JobRun.job)
        .subquery()
    )
    query = select(JobRun.job, JobRun.status).join(
        newest, (JobRun.job == newest.c.job) & (JobRun.finished_at == newest.c.at)
    )
    with connect(bind) as conn:
        return {str(job): status == SUCCEEDED for job, status in conn.execute(query)}
