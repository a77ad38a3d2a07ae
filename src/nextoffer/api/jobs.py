"""Background jobs started through the API: run in a thread here when no broker is set."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nextoffer.api.problems import ProblemError
from nextoffer.observe.logs import correlation_id
from nextoffer.pipelines.jobs import JOB_KINDS, JobContext, run_job

log = logging.getLogger(__name__)


class JobRunner:
    """Runs one job of each kind at a time, off the request thread, recorded in `job_runs`.

    With a broker configured (the jobs/ops issue) the same `run_job` runs in a Celery worker
    instead; the API answers the same way either way: 202 with the run id to poll.
    """

    def __init__(self, context: JobContext, after: Callable[[str], None]) -> None:
        self.context = context
        self.after = after
        self._pool = ThreadPoolExecutor(max_workers=len(JOB_KINDS), thread_name_prefix="job")
        self._running: set[str] = set()
        self._lock = threading.Lock()

    def start(self, kind: str, params: dict[str, Any], started_by: str) -> str:
        """Start `kind`; returns the run id once the run is recorded (so it can be polled)."""
        if kind not in JOB_KINDS:
            raise ProblemError(422, f"unknown job {kind!r}; jobs: {', '.join(JOB_KINDS)}")
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

                run_job(self.context, kind, params, run_id, after=self.after, recorded=recorded.set)
                log.info("job %s finished", kind, extra={"job": kind})
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

    def shutdown(self) -> None:
        """Stop taking jobs; running ones finish in the background."""
        self._pool.shutdown(wait=False, cancel_futures=True)
