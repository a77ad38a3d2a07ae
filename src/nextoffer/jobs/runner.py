"""The one way a job starts, whoever starts it: its lock, then exactly one `job_runs` record.

The CLI, the API's thread, a Celery task, a beat chain's stage and an Airflow task all call
`run_exclusive` (or `execute`, which also hands back the job's own result), in the process
where the job runs. A start refused because the job is running elsewhere records nothing
and raises JobConflictError.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from nextoffer.config import Settings
from nextoffer.domain.errors import JobConflictError
from nextoffer.jobs.catalogue import job_spec
from nextoffer.jobs.context import JobContext
from nextoffer.store import Engine
from nextoffer.store.engine import make_engine
from nextoffer.store.locks import try_lock
from nextoffer.store.runs import QUEUED, RUNNING, SUCCEEDED, fail_run, get_run, recorded_run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finished:
    """A job run that ended well: its id, its recorded counts, and the job's own result.

    `result` is None when the run had succeeded before (a message delivered twice).
    """

    run_id: str
    counts: dict[str, Any]
    result: object = field(default=None, compare=False)


@contextlib.contextmanager
def hold_job_lock(settings: Settings, engine: Engine, name: str) -> Iterator[bool]:
    """Try to take job `name`'s lock without waiting; yields whether it was taken.

    PostgreSQL: a session advisory lock on NEXTOFFER_DATABASE_DIRECT_URL when set (a
    transaction pooler such as pgbouncer hands each transaction another server session,
    where a session lock would not hold), else on `engine`. SQLite: a file lock under
    VAR_DIR/locks. Either way the lock dies with its holder, so a killed worker never leaves
    a job locked.
    """
    lock_dir = settings.var_dir / "locks"
    direct = settings.database_direct_url
    if not direct or direct == settings.database_url:
        with try_lock(engine, f"job:{name}", lock_dir) as held:
            yield held
        return
    # One connection for as long as the job runs; none kept once it has ended.
    lock_engine = make_engine(direct, pool_size=1)
    try:
        with try_lock(lock_engine, f"job:{name}", lock_dir) as held:
            yield held
    finally:
        lock_engine.dispose()


def job_is_running(settings: Settings, engine: Engine, name: str) -> bool:
    """Whether job `name` runs now anywhere (its lock is held); a sender's early refusal."""
    with hold_job_lock(settings, engine, name) as held:
        return not held


def execute(
    context: JobContext,
    name: str,
    params: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    *,
    after: Callable[[str], None] | None = None,
    recorded: Callable[[], None] | None = None,
) -> Finished:
    """Run job `name` under `run_id` (a new id if None) unless it is running anywhere.

    The lock is taken first; only then is the run recorded (`running`, then `succeeded` or
    `failed` with the counts and the error), so a refused start writes no row and raises
    JobConflictError. `recorded()` is called once the row exists (a caller may then hand
    out the id), `after(name)` once the job succeeded. Safe to call again with the same run
    id (a broker may deliver a message twice): a run that succeeded returns its counts, one
    still running elsewhere is left alone, and a `queued` row a sender wrote for this start
    is marked failed if the start is refused, so that it never waits for a worker.
    """
    spec = job_spec(name)
    run_id = run_id or str(uuid.uuid4())
    engine = context.engine
    before = get_run(engine, run_id)
    if before is not None and before.status == SUCCEEDED:
        return Finished(run_id, dict(before.counts or {}))
    with hold_job_lock(context.settings, engine, name) as held:
        if held:
            with recorded_run(engine, name, run_id) as run:
                if recorded is not None:
                    recorded()
                result = spec.run(context, dict(params or {}), run)
            if after is not None:
                after(name)
            return Finished(run_id, run.counts, result)
    now = get_run(engine, run_id)
    if now is not None and now.status in (RUNNING, SUCCEEDED):
        log.warning("job %s %s was delivered twice; it is %s elsewhere", name, run_id, now.status)
        return Finished(run_id, dict(now.counts or {}))
    message = f"a {name} job is already running; this one was not started"
    if now is not None and now.status == QUEUED:
        fail_run(engine, run_id, message)
    raise JobConflictError(message)


def run_exclusive(
    context: JobContext,
    name: str,
    params: Mapping[str, Any] | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Run job `name` as `execute` does; returns the counts recorded with the run.

    For callers that want only the counts (a worker's task, the CLI); `execute` takes the
    hooks and hands back the job's own result too.

    One of a kind at a time is also what keeps the precompute fan-out free of deadlock
    (worker/fanout.py).
    """
    return execute(context, name, params, run_id).counts
