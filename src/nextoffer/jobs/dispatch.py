"""Start a job away from the caller: in a thread of this process, or on a Celery worker.

The API and the console start jobs through `JobRunner.start`; either way the job itself
runs through `run_exclusive` where it runs (this process's thread, or the worker), which
takes its lock and records its one run.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from nextoffer.config import Settings
from nextoffer.domain.errors import BackendUnavailableError, ConfigError, JobConflictError
from nextoffer.jobs.catalogue import ALL_KINDS, job_spec
from nextoffer.jobs.context import JobContext
from nextoffer.jobs.runner import execute, job_is_running
from nextoffer.observe.logs import correlation_id
from nextoffer.store.runs import fail_run, queue_run, unfinished_run, utcnow

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)

# How long `start` waits for an inline job to take its lock and record its run, so that the
# id it answers with can be polled at once (or the refusal reported instead).
RECORDED_WAIT_S = 5.0


def require_celery() -> None:
    """A ConfigError unless Celery is installed (the `worker` extra): brokers need it."""
    try:
        import celery  # noqa: F401
    except ImportError:
        raise ConfigError(
            "NEXTOFFER_BROKER_URL is set but Celery is not installed: "
            "pip install 'nextoffer[worker]'"
        ) from None


def open_broker(settings: Settings) -> Celery:
    """The Celery app that sends jobs to NEXTOFFER_BROKER_URL; a ConfigError when unusable."""
    require_celery()
    from nextoffer.jobs.broker import make_celery

    return make_celery(settings)


class JobRunner:
    """Runs one job of each kind at a time, off the request thread, recorded in `job_runs`.

    With NEXTOFFER_BROKER_URL set the job runs in a Celery worker instead (`nextoffer
    worker`); the caller gets the same answer either way: the run id to poll. A worker's
    results reach an API process through its serving-state refresh timer.
    """

    def __init__(self, context: JobContext, after: Callable[[str], None]) -> None:
        self.context = context
        self.after = after
        self._pool = ThreadPoolExecutor(max_workers=len(ALL_KINDS), thread_name_prefix="job")
        self._running: set[str] = set()
        self._lock = threading.Lock()
        settings = context.settings
        self._celery: Celery | None = open_broker(settings) if settings.broker_url else None

    def start(self, kind: str, params: Mapping[str, Any], started_by: str) -> str:
        """Start `kind`; returns the run id once the run is recorded (so it can be polled).

        UnknownJobError for a name the catalogue lacks; JobConflictError when a job of the
        kind runs anywhere; BackendUnavailableError when the broker cannot take it.
        """
        job_spec(kind)
        if self._celery is not None:
            return self._send(self._celery, kind, params, started_by)
        with self._lock:
            if kind in self._running:
                raise JobConflictError(f"a {kind} job is already running")
            self._running.add(kind)
        run_id = str(uuid.uuid4())
        settled = threading.Event()
        refused: list[JobConflictError] = []

        def work() -> None:
            token = correlation_id.set(run_id)
            try:
                log.info("job %s started by %s", kind, started_by, extra={"job": kind})
                # The lock keeps out a worker or `nextoffer` command running the same kind.
                execute(self.context, kind, params, run_id, after=self.after, recorded=settled.set)
                log.info("job %s finished", kind, extra={"job": kind})
            except JobConflictError as exc:
                refused.append(exc)
                log.warning("job %s refused: %s", kind, exc, extra={"job": kind})
            except Exception:
                log.exception("job %s failed", kind)
            finally:
                settled.set()
                with self._lock:
                    self._running.discard(kind)
                correlation_id.reset(token)

        self._pool.submit(work)
        settled.wait(timeout=RECORDED_WAIT_S)
        if refused:
            raise refused[0]
        return run_id

    def _send(self, celery: Celery, kind: str, params: Mapping[str, Any], started_by: str) -> str:
        """Queue `kind` for a worker: a `queued` row first, so the id can be polled at once."""
        from nextoffer.jobs.broker import BROKER_SETTING, send_job

        engine, settings = self.context.engine, self.context.settings
        # A run older than its time limit was killed without recording it; it blocks nothing.
        since = utcnow() - timedelta(seconds=job_spec(kind).hard_limit_s)
        busy = unfinished_run(engine, kind, since)
        if busy is not None:
            raise JobConflictError(f"a {kind} job is already {busy.status} ({busy.run_id})")
        # Running now, started by anyone (a CLI command, beat, another API): refused here at
        # once rather than queued to be refused by the worker. The worker still takes the
        # lock itself; this only answers sooner.
        if job_is_running(settings, engine, kind):
            raise JobConflictError(f"a {kind} job is already running")
        run_id = str(uuid.uuid4())
        queue_run(engine, kind, run_id)
        try:
            send_job(celery, kind, params, run_id)
        except Exception as exc:
            # Whatever stopped the send, the queued row must not wait for a worker forever.
            detail = " ".join(f"{type(exc).__name__}: {exc}".split())
            fail_run(engine, run_id, f"not sent to the broker: {detail}")
            raise BackendUnavailableError(BROKER_SETTING, "the job broker", detail) from None
        log.info("job %s queued by %s", kind, started_by, extra={"job": kind, "id": run_id})
        return run_id

    def shutdown(self) -> None:
        """Stop taking jobs; running ones finish in the background (or on the workers)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._celery is not None:
            self._celery.close()
