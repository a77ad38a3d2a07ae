"""A/B experiments: create, list, stop, and results per variant."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from nextoffer.api.deps import Operator, ServicesDep, Viewer
from nextoffer.api.schemas import ExperimentIn, ExperimentOut, ExperimentResultsOut, from_record
from nextoffer.domain.experiments import Strategy, Variant
from nextoffer.store import experiments as store
from nextoffer.store.experiments import ExperimentRecord
from nextoffer.usecases.experiments import start_experiment, stop_experiment

router = APIRouter(prefix="/v1/experiments", tags=["experiments"])

ExperimentId = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")]


def _out(record: ExperimentRecord) -> ExperimentOut:
    return from_record(
        ExperimentOut,
        record,
        unit=str(record.unit),
        status=str(record.status),
        variants=[
            {
                "name": v.name,
                "strategy": v.strategy.value,
                "weight": v.weight,
                "model_version": v.model_version,
            }
            for v in record.variants
        ],
    )


@router.post("", response_model=ExperimentOut, status_code=201, summary="Start an experiment")
def create(body: ExperimentIn, services: ServicesDep, caller: Operator) -> ExperimentOut:
    """Start an experiment now. One runs at a time, so variants never overlap."""
    variants = [
        Variant(v.name, Strategy(v.strategy), v.weight, v.model_version) for v in body.variants
    ]
    record = start_experiment(
        services, body.name, body.unit, variants, started_by=f"{caller.kind}:{caller.id}"
    )
    return _out(record)


@router.get("", response_model=list[ExperimentOut], summary="List experiments")
def list_all(
    services: ServicesDep,
    _caller: Viewer,
    status: Annotated[str | None, Query(pattern="^(running|stopped)$")] = None,
) -> list[ExperimentOut]:
    """Experiments, newest first."""
    return [_out(r) for r in store.list_experiments(services.engine, status)]


@router.get("/{experiment_id}", response_model=ExperimentOut, summary="One experiment")
def get_one(experiment_id: ExperimentId, services: ServicesDep, _caller: Viewer) -> ExperimentOut:
    """An experiment's design and status."""
    return _out(store.get_experiment(services.engine, experiment_id))


@router.post("/{experiment_id}/stop", response_model=ExperimentOut, summary="Stop it")
def stop(experiment_id: ExperimentId, services: ServicesDep, _caller: Operator) -> ExperimentOut:
    """Stop assigning variants; results stay readable. Stopping twice is harmless."""
    return _out(stop_experiment(services, experiment_id))


@router.get("/{experiment_id}/results", response_model=ExperimentResultsOut, summary="Results")
def results(
    experiment_id: ExperimentId, services: ServicesDep, _caller: Viewer
) -> ExperimentResultsOut:
    """Per variant: impressions, CTR and conversion, each with a 95 % interval.

    Conversion is accepts / impressions. Each variant is compared with the control by a
    two-proportion z-test and gets a plain-language verdict.
    """
    record = store.get_experiment(services.engine, experiment_id)
    found = store.experiment_results(services.engine, experiment_id)
    data: dict[str, Any] = dataclasses.asdict(found)
    return ExperimentResultsOut(
        experiment_id=experiment_id,
        status=str(record.status),
        control=found.control,
        results=data,
    )
