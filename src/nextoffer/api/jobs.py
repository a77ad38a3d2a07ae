"""Background jobs started through the API: on Celery workers with a broker, else in a thread."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from nextoffer.api.problems import ProblemError
from nextoffer.domain.errors import BackendUnavailableError, ConfigError
from nextoffer.observe.logs import correlation_id
from nextoffer.ops.jobs import ALL_KINDS, JobConflictError, run_exclusive
from nextoffer.pipelines.jobs import JobContext
from nextoffer.store.runs import fail_run, queue_run, unfinished_run, utcnow

log = logging.getLogger(__name__)


class JobRunner:
    """Runs one job of each kind at a time, off the request thread, recorded in `job_runs`.

    With NEXTOFFER_BROKER_URL set the same `run_job` runs in a Celery worker instead
    (`nextoffer worker`); the API answers the same way either way: 202 with the run id to
    poll. A worker's results reach this process through its serving-state refresh timer.
    """

    def __init__(self, context: JobContext, after: Callable[[str], None]) -> None:
        self.context = context
        self.after = after
        self._pool = ThreadPoolExecutor(max_workers=len(ALL_KINDS), thread_name_prefix="job")
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._celery: Any = None
        if context.settings.broker_url:
            try:
                from nextoffer.worker.app import make_celery
            except ImportError:
                raise ConfigError(
                    "NEXTOFFER_BROKER_URL is set but Celery is not installed: "
                    "pip install 'nextoffer[worker]'"
                ) from None
            self._celery = make_celery(context.settings)

    def start(self, kind: str, params: dict[str, Any], started_by: str) -> str:
        """Start `kind`; returns the run id once the run is recorded (so it can be polled)."""
        if kind not in ALL_KINDS:
            raise ProblemError(422, f"unknown job {kind!r}; jobs: {', '.join(ALL_KINDS)}")
        if self._celery is not None:
            return self._send(kind, params, started_by)
        with self._lock:
            if kind in self._running:
                raise ProblemError(409, f"a {kind} job is already running", kind="conflict")
            self._running.add(kind)
        run_id = str(uuid.uuid4())
        recorded = threading.Event()

        def work() -> None:
            token = correlation_id.set(run_id)
            try:
                log.info("job %s started by %s", kind, started_by, extra={"job": kind})

                # The lock also keeps out a worker or `nextoffer` command running the same kind.
                run_exclusive(
                    self.context, kind, params, run_id, after=self.after, recorded=recorded.set
                )
                log.info("job %s finished", kind, extra={"job": kind})
            except JobConflictError as exc:
                log.warning("job %s refused: %s", kind, exc, extra={"job": kind})
            except Exception:
                log.exception("job %s failed", kind)
            finally:
                recorded.set()
                with self._lock:
                    self._running.discard(kind)
                correlation_id.reset(token)

        self._pool.submit(work)
        recorded.wait(timeout=5.0)
        return run_id

    def _send(self, kind: str, params: dict[str, Any], started_by: str) -> str:
        """Queue `kind` for a worker: a `queued` row first, so the id can be polled at once."""
        from nextoffer.worker.app import BROKER_SETTING, job_queue, send_job, time_limits

        engine = self.context.engine
        # A run older than its time limit was killed without recording it; it blocks nothing.
        since = utcnow() - timedelta(seconds=time_limits(job_queue(kind))[1])
        busy = unfinished_run(engine, kind, since)
        if busy is not None:
            raise ProblemError(
                409, f"a {kind} job is already {busy.status} ({busy.run_id})", kind="conflict"
            )
        run_id = str(uuid.uuid4())
        queue_run(engine, kind, run_id)
        try:
            send_job(self._celery, kind, params, run_id)
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
