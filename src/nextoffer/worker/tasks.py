"""Celery tasks: a job of the catalogue, a precompute chunk, and beat's entries (chains)."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast

from celery import Celery, chain, shared_task
from celery.exceptions import Ignore

from nextoffer.domain.errors import JobConflictError
from nextoffer.jobs.broker import (
    PRECOMPUTE_CHUNK,
    RUN_JOB,
    RUN_SCHEDULED,
    job_signature,
    settings_of,
)
from nextoffer.jobs.context import JobContext
from nextoffer.jobs.runner import run_exclusive
from nextoffer.models.offer_model import OfferModel
from nextoffer.models.uplift import UpliftModel
from nextoffer.observe.logs import correlation_id
from nextoffer.pipelines.precompute import Chunk, load_catalogue, precompute_chunk
from nextoffer.scoring.champions import Champion, load_offer_version, load_uplift_version
from nextoffer.store import OperationalError
from nextoffer.worker.fanout import job_context

log = logging.getLogger(__name__)

# A database that drops out (a restart, a failover) is waited for, not failed on: every
# task is idempotent, so running it again from the start is safe.
RETRY = {
    "autoretry_for": (OperationalError,),
    "retry_backoff": True,
    "retry_backoff_max": 300,
    "max_retries": 5,
}


F = TypeVar("F", bound=Callable[..., Any])


def _task(name: str) -> Callable[[F], F]:
    """A bound shared task, registered on every nextoffer Celery app, retried as above."""
    return cast(Callable[[F], F], shared_task(name=name, bind=True, **RETRY))


@dataclass
class _Process:
    """What one worker process keeps between tasks: connections and the loaded model."""

    context: JobContext
    offers: dict[int, Champion[OfferModel]] = field(default_factory=dict)
    uplift: dict[int, Champion[UpliftModel]] = field(default_factory=dict)

    def offer_model(self, version: int) -> Champion[OfferModel]:
        """Offers `version`, loaded once per process (a run's chunks all use one version)."""
        champion = self.offers.get(version)
        if champion is None:
            self.offers.clear()  # one model in memory: the version of the run under way
            champion = self.offers[version] = load_offer_version(self.context.models(), version)
        return champion

    def uplift_model(self, version: int | None) -> Champion[UpliftModel] | None:
        """Uplift `version` (None: offers are not ranked by uplift), loaded once per process."""
        if version is None:
            return None
        champion = self.uplift.get(version)
        if champion is None:
            self.uplift.clear()
            champion = self.uplift[version] = load_uplift_version(self.context.models(), version)
        return champion


_processes: dict[tuple[int, int], _Process] = {}


def _process(app: Celery) -> _Process:
    """The state of the current process for `app`, made on first use (not before a fork)."""
    key = (os.getpid(), id(app))
    if key not in _processes:
        # One platform per worker process, as every entry point builds one. Imported here:
        # the platform loads prometheus_client, which must not be imported before the
        # worker's metrics set PROMETHEUS_MULTIPROC_DIR (worker/metrics.py).
        from nextoffer.platform import build_platform

        _processes[key] = _Process(job_context(app, build_platform(settings_of(app))))
    return _processes[key]


@_task(RUN_JOB)
def run_job_task(self: Any, kind: str, params: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Run job `kind` of the catalogue, recorded in `job_runs` under `run_id`.

    Refused because the job runs elsewhere: nothing is recorded, and the task ends as
    ignored, neither succeeded nor failed, which also stops the rest of a chain.
    """
    token = correlation_id.set(run_id)
    try:
        log.info("job %s started", kind, extra={"job": kind, "pid": os.getpid()})
        counts = run_exclusive(_process(self.app).context, kind, params, run_id)
        log.info("job %s finished", kind, extra={"job": kind, "counts": counts})
        return counts
    except JobConflictError as exc:
        log.warning("job %s refused: %s", kind, exc, extra={"job": kind})
        raise Ignore() from None
    finally:
        correlation_id.reset(token)


@_task(PRECOMPUTE_CHUNK)
def precompute_chunk_task(
    self: Any,
    first: str,
    last: str,
    customers: int,
    computed_at: str,
    model_version: int,
    uplift_version: int | None = None,
) -> list[int]:
    """Score customers `first`..`last` with offers `model_version`; [customers, with offers].

    `uplift_version` ranks retention offers (NEXTOFFER_OFFER_RANKING=uplift); None when not.
    """
    process = _process(self.app)
    champion = process.offer_model(model_version)
    engine, settings = process.context.engine, process.context.settings
    count, with_offers = precompute_chunk(
        engine,
        settings,
        champion,
        load_catalogue(engine, champion),
        Chunk(first, last, customers),
        datetime.fromisoformat(computed_at),
        process.uplift_model(uplift_version),
    )
    log.info(
        "precompute chunk %s..%s: %d customers",
        first,
        last,
        count,
        extra={
            "chunk": [first, last],
            "customers": count,
            "computed_at": computed_at,
            "model_version": model_version,
            "pid": os.getpid(),
        },
    )
    return [count, with_offers]


@_task(RUN_SCHEDULED)
def run_scheduled_task(self: Any, entry: str, jobs: list[str]) -> list[str]:
    """Start a beat entry's jobs as a chain (each on its queue); the run ids, or [] if idle.

    Quick: it only sends messages. Each job gets a fresh run id here (beat's arguments are
    the same every time). With NEXTOFFER_SCHEDULER=airflow this does nothing: one
    scheduler is in charge, and this check holds even if a beat was left running.
    """
    settings = settings_of(self.app)
    if settings.scheduler != "celery":
        log.info(
            "schedule %s skipped: NEXTOFFER_SCHEDULER=%s is in charge",
            entry,
            settings.scheduler,
            extra={"entry": entry},
        )
        return []
    run_ids = [str(uuid.uuid4()) for _ in jobs]
    steps = [
        job_signature(self.app, kind, {}, run_id)
        for kind, run_id in zip(jobs, run_ids, strict=True)
    ]
    chain(*steps).apply_async()
    log.info(
        "schedule %s started %s", entry, ", ".join(jobs), extra={"entry": entry, "runs": run_ids}
    )
    return run_ids
