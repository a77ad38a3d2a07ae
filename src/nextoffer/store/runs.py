"""Records of job runs (start, end, status, counts) that dashboards and metrics read."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, insert, select, update

from nextoffer.store.schema import JobRun


def utcnow() -> datetime:
    """The current time in UTC, the only clock the store uses."""
    return datetime.now(UTC)


@dataclass
class RunHandle:
    """A run in progress: add counts to it; they are saved when it ends."""

    run_id: str
    job: str
    counts: dict[str, Any] = field(default_factory=dict)


QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"


@contextmanager
def recorded_run(engine: Engine, job: str, run_id: str | None = None) -> Iterator[RunHandle]:
    """Record a job run: `running` now, then `succeeded` or `failed` with counts and message.

    `run_id` lets a caller hand out the id before the run starts (the API's job id). A row
    that already has this id (queued for a worker, or left by an attempt that is being
    retried) is taken over and restarted, so one job keeps one id through a broker.
    """
    handle = RunHandle(run_id or str(uuid.uuid4()), job)
    start = {"status": RUNNING, "started_at": utcnow(), "counts": {}}
    with engine.begin() as conn:
        taken = conn.execute(
            update(JobRun)
            .where(JobRun.run_id == handle.run_id)
            .values(**start, job=job, finished_at=None, message=None)
        ).rowcount
        if not taken:
            conn.execute(insert(JobRun).values(run_id=handle.run_id, job=job, **start))
    try:
        yield handle
    except BaseException as exc:
        _finish(engine, handle, FAILED, f"{type(exc).__name__}: {exc}"[:2000])
        raise
    _finish(engine, handle, SUCCEEDED, None)


def queue_run(engine: Engine, job: str, run_id: str) -> None:
    """Record a run handed to a worker: `queued` until a worker starts it (`recorded_run`)."""
    with engine.begin() as conn:
        conn.execute(
            insert(JobRun).values(
                run_id=run_id, job=job, status=QUEUED, started_at=utcnow(), counts={}
            )
        )


def fail_run(engine: Engine, run_id: str, message: str) -> None:
    """Mark a run failed that never got to run (its job could not be sent, or was refused)."""
    _finish(engine, RunHandle(run_id, ""), FAILED, message[:2000])


def unfinished_run(engine: Engine, job: str, since: datetime) -> JobRun | None:
    """The newest run of `job` started after `since` that is still queued or running."""
    query = (
        select(JobRun)
        .where(JobRun.job == job, JobRun.status.in_((QUEUED, RUNNING)), JobRun.started_at > since)
        .order_by(JobRun.started_at.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return None if row is None else JobRun(**row._mapping)


def _finish(engine: Engine, handle: RunHandle, status: str, message: str | None) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(JobRun)
            .where(JobRun.run_id == handle.run_id)
            .values(status=status, finished_at=utcnow(), counts=handle.counts, message=message)
        )


def get_run(engine: Engine, run_id: str) -> JobRun | None:
    """One run by id, or None."""
    with engine.connect() as conn:
        row = conn.execute(select(JobRun).where(JobRun.run_id == run_id)).first()
    return None if row is None else JobRun(**row._mapping)


def last_runs(engine: Engine, job: str | None = None, limit: int = 20) -> list[JobRun]:
    """The most recent runs, newest first."""
    query = select(JobRun).order_by(JobRun.started_at.desc()).limit(limit)
    if job is not None:
        query = query.where(JobRun.job == job)
    with engine.connect() as conn:
        return [JobRun(**row._mapping) for row in conn.execute(query)]


def record_finished_run(
    engine: Engine,
    job: str,
    started_at: datetime,
    counts: dict[str, Any],
    *,
    also_finished: tuple[str, datetime] | None = None,
) -> str:
    """Record a run that already ended well (a restore, which replaced `job_runs` itself).

    `also_finished` = (run id, finished at) marks another run succeeded in the same
    transaction (a backup's run, `running` in its own snapshot). Returns the new run's id.
    """
    run_id = str(uuid.uuid4())
    with engine.begin() as conn:
        if also_finished is not None:
            other, finished_at = also_finished
            conn.execute(
                update(JobRun)
                .where(JobRun.run_id == other)
                .values(status=SUCCEEDED, finished_at=finished_at)
            )
        conn.execute(
            insert(JobRun).values(
                run_id=run_id,
                job=job,
                status=SUCCEEDED,
                started_at=started_at,
                finished_at=utcnow(),
                counts=counts,
            )
        )
    return run_id
