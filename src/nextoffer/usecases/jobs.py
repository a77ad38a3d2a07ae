"""Start a job by its catalogue name (here or on a worker) and look a run up by its id."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nextoffer.domain.errors import NotFoundError
from nextoffer.jobs.catalogue import ALL_KINDS, CONSOLE_JOBS, job_spec
from nextoffer.jobs.params import check_params
from nextoffer.store.reads.jobs import RunView, run_by_id
from nextoffer.usecases.context import Services

__all__ = ["ALL_KINDS", "CONSOLE_JOBS", "job_run", "start_job"]


def start_job(services: Services, kind: str, params: Mapping[str, Any], started_by: str) -> RunView:
    """Start job `kind` for `started_by`; returns its run as first recorded, to be polled.

    Raises UnknownJobError (no job of that name), InvalidRequestError (a parameter the job
    does not take or cannot read: refused now, not failed later), JobConflictError (one of
    its kind is running, or queued for a worker) or BackendUnavailableError (the broker
    cannot take it).
    """
    job_spec(kind)
    check_params(kind, params)
    return job_run(services, services.jobs.start(kind, dict(params), started_by))


def job_run(services: Services, run_id: str) -> RunView:
    """The run `run_id`: status, counts and timing; NotFoundError when there is none."""
    run = run_by_id(services.engine, run_id)
    if run is None:
        raise NotFoundError(f"no job {run_id}")
    return run
