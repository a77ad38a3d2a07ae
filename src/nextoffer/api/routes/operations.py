"""Operator endpoints: registered models and promotion, background jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from nextoffer.api.deps import Admin, Operator, ServicesDep
from nextoffer.api.problems import ProblemError
from nextoffer.api.schemas import (
    DecisionOut,
    JobIn,
    JobOut,
    ModelsOut,
    ModelVersionOut,
    PromoteIn,
    from_record,
)
from nextoffer.registry.protocol import MODEL_KINDS as KINDS
from nextoffer.serving.audit import request_actor
from nextoffer.store.reads.jobs import RunView
from nextoffer.usecases import jobs
from nextoffer.usecases.models import data_mismatches, promote_model, roll_back_model

router = APIRouter(prefix="/v1", tags=["operations"])


@router.get("/models", response_model=ModelsOut, summary="Registered models")
def list_models(services: ServicesDep, _caller: Operator) -> ModelsOut:
    """Every registered version with its metrics, newest first, and the champions."""
    versions: list[ModelVersionOut] = []
    champions: dict[str, int | None] = {}
    for kind in KINDS:
        found = services.registry.versions(kind)
        champions[kind] = next((v.version for v in found if v.is_champion), None)
        stale = data_mismatches(services, found)
        versions.extend(
            from_record(ModelVersionOut, v, kind=kind, data_mismatches=stale[v.version])
            for v in found
        )
    state = services.state
    return ModelsOut(
        champions=champions,
        serving={
            "offers": state.offers.label if state.offers else None,
            "churn": state.churn.label if state.churn else None,
            "uplift": state.uplift.label if state.uplift else None,
        },
        versions=versions,
    )


@router.post(
    "/models/{kind}/champion",
    response_model=DecisionOut,
    summary="Promote or roll back",
    responses={
        409: {"description": "the registry cannot: no such version, pruned, nothing to roll back"}
    },
)
def set_champion(
    kind: Annotated[str, Path(pattern="^(offers|churn|uplift)$")],
    body: PromoteIn,
    services: ServicesDep,
    caller: Admin,
    request: Request,
) -> DecisionOut:
    """Point the champion alias at a version (or back at the previous one); admin only."""
    actor = request_actor(request.scope)
    if body.rollback:
        decision = roll_back_model(services, kind, actor=actor)
    elif body.version is None:
        raise ProblemError(422, "give a version, or rollback=true")
    else:
        decision = promote_model(
            services, kind, body.version, body.reason, by=f"{caller.kind}:{caller.id}", actor=actor
        )
    return from_record(DecisionOut, decision, kind=kind)


@router.post(
    "/jobs",
    response_model=JobOut,
    status_code=202,
    summary="Start a job",
    responses={409: {"description": "a job of this kind is already running or queued"}},
)
def start_job(body: JobIn, services: ServicesDep, caller: Operator) -> JobOut:
    """Start a job in the background (one of a kind at a time); poll it by its id.

    An unknown job answers 422, one of its kind already running 409, a broker that cannot
    take it 503 (the domain errors' problem types, api/problems.py).
    """
    run = jobs.start_job(services, body.kind, body.params, f"{caller.kind}:{caller.id}")
    return _job(run)


@router.get("/jobs/{job_id}", response_model=JobOut, summary="A job's status")
def get_job(
    job_id: Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")],
    services: ServicesDep,
    _caller: Operator,
) -> JobOut:
    """Status, counts and timing of a job run."""
    return _job(jobs.job_run(services, job_id))


def _job(run: RunView) -> JobOut:
    return from_record(JobOut, run, job_id=run.run_id, kind=run.job)
