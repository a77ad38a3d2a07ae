"""A/B experiments: create, list, stop, and results per randomisation unit."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from nextoffer.api.deps import Operator, ServicesDep, Viewer
from nextoffer.api.schemas import (
    ExperimentIn,
    ExperimentMetricOut,
    ExperimentOut,
    ExperimentResultsOut,
    ExperimentVariantOut,
    SampleRatioOut,
    from_record,
)
from nextoffer.domain.experiment_stats import SRM_ALPHA, VariantStats
from nextoffer.domain.experiments import Strategy, Variant
from nextoffer.serving.audit import request_actor
from nextoffer.store import experiments as store
from nextoffer.store.experiments import ExperimentRecord
from nextoffer.usecases.experiments import (
    ExperimentResults,
    experiment_results,
    start_experiment,
    stop_experiment,
)

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


@router.post(
    "",
    response_model=ExperimentOut,
    status_code=201,
    summary="Start an experiment",
    responses={409: {"description": "an experiment is already running; stop it first"}},
)
def create_experiment(
    body: ExperimentIn, services: ServicesDep, caller: Operator, request: Request
) -> ExperimentOut:
    """Start an experiment now. One runs at a time, so variants never overlap."""
    variants = [
        Variant(v.name, Strategy(v.strategy), v.weight, v.model_version) for v in body.variants
    ]
    record = start_experiment(
        services,
        body.name,
        body.unit,
        variants,
        started_by=f"{caller.kind}:{caller.id}",
        actor=request_actor(request.scope),
    )
    return _out(record)


@router.get("", response_model=list[ExperimentOut], summary="List experiments")
def list_experiments(
    services: ServicesDep,
    _caller: Viewer,
    status: Annotated[str | None, Query(pattern="^(running|stopped)$")] = None,
) -> list[ExperimentOut]:
    """Experiments, newest first."""
    return [_out(r) for r in store.list_experiments(services.engine, status)]


@router.get("/{experiment_id}", response_model=ExperimentOut, summary="One experiment")
def get_experiment(
    experiment_id: ExperimentId, services: ServicesDep, _caller: Viewer
) -> ExperimentOut:
    """An experiment's design and status."""
    return _out(store.get_experiment(services.engine, experiment_id))


@router.post(
    "/{experiment_id}/stop",
    response_model=ExperimentOut,
    summary="Stop it",
    name="stop_experiment",  # the operationId; the function's name is the use case's
)
def stop(
    experiment_id: ExperimentId, services: ServicesDep, _caller: Operator, request: Request
) -> ExperimentOut:
    """Stop assigning variants; results stay readable. Stopping twice is harmless."""
    return _out(stop_experiment(services, experiment_id, actor=request_actor(request.scope)))


@router.get("/{experiment_id}/results", response_model=ExperimentResultsOut, summary="Results")
def get_experiment_results(
    experiment_id: ExperimentId, services: ServicesDep, _caller: Viewer
) -> ExperimentResultsOut:
    """Per variant: its units and, against the control, each metric per unit.

    A unit (customer, or session) counts once it was served an answer of its variant: the
    server records that exposure, for the control variant too, so events posted for units
    shown nothing count nowhere. Metrics: conversion (accepted, or acquired an offered
    product within the window), CTR (delta method) and the guardrails churn and complaints.
    Each difference has an always-valid p-value and confidence sequence (mSPRT), Holm-
    adjusted over every variant x metric, so reading the results often is safe; below the
    minimum data a metric says "not enough data yet". The sample-ratio check flags a split
    of units unlike the design (chi-square p < 0.001).
    """
    return results_out(experiment_results(services, experiment_id))


def results_out(found: ExperimentResults) -> ExperimentResultsOut:
    """The API's shape of an experiment's results."""
    record, stats = found.experiment, found.stats
    names = [v.name for v in record.variants]
    total = sum(stats.sample_ratio.observed)
    ratio = stats.sample_ratio
    return ExperimentResultsOut(
        experiment_id=record.experiment_id,
        name=record.name,
        status=str(record.status),
        unit=str(record.unit),
        control=stats.control,
        window_days=found.window_days,
        alpha=stats.alpha,
        detectable_lift=stats.detectable_lift,
        min_units_per_arm=stats.min_units_per_arm,
        min_events_per_arm=stats.min_events_per_arm,
        ctr_compared=found.ctr_compared,
        method=stats.method,
        sample_ratio=SampleRatioOut(
            observed=dict(zip(names, ratio.observed, strict=True)),
            expected=dict(zip(names, ratio.expected, strict=True)),
            chi_square=ratio.statistic,
            p_value=ratio.p_value,
            threshold=SRM_ALPHA,
            flagged=ratio.flagged,
            verdict=ratio.verdict,
        ),
        variants=[
            _variant_out(found, v, record.design.variant(v.variant).strategy.value, total)
            for v in stats.variants
        ],
    )


def _variant_out(
    found: ExperimentResults, variant: VariantStats, strategy: str, total: int
) -> ExperimentVariantOut:
    arm = variant.arm
    responses = found.responses_of(variant.variant)
    return ExperimentVariantOut(
        variant=variant.variant,
        strategy=strategy,
        is_control=variant.is_control,
        units=arm.units,
        designed_share=arm.designed_share,
        observed_share=arm.units / total if total else None,
        converted=arm.converted,
        conversion_rate=arm.conversion_rate,
        impressions=responses.impressions,
        clicks=responses.clicks,
        ctr=responses.ctr,
        churned=arm.churned or 0,
        churn_rate=arm.churn_rate,
        complaints=arm.complaints or 0,
        complaints_per_unit=arm.complaints_per_unit,
        metrics=[
            ExperimentMetricOut(
                metric=m.metric.value,
                guardrail=m.guardrail,
                enough_data=m.enough_data,
                control_value=m.control_value,
                variant_value=m.variant_value,
                difference=m.difference,
                lift=m.lift,
                std_error=m.std_error,
                ci_low=m.low,
                ci_high=m.high,
                p_value=m.p_value,
                adjusted_p=m.adjusted_p,
                significant=m.significant,
                verdict=m.verdict,
            )
            for m in variant.metrics
        ],
        verdict=variant.verdict,
    )
