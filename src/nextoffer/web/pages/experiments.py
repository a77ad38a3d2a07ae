"""A/B experiments: create, watch (per-unit results, sample-ratio check, verdicts) and stop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Form, Path
from starlette.responses import Response

from nextoffer.domain.errors import NextOfferError, NotFoundError
from nextoffer.domain.experiment_stats import SRM_ALPHA, Metric, MetricResult
from nextoffer.domain.experiments import MAX_VARIANTS, Strategy, Variant
from nextoffer.domain.roles import Role
from nextoffer.store import experiments as store
from nextoffer.usecases.experiments import experiment_results, start_experiment, stop_experiment
from nextoffer.web.console import FormDep, PageDep, PageError

router = APIRouter(include_in_schema=False)

FORM_ROWS = 4
STRATEGIES = [s.value for s in Strategy]
ExperimentId = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")]


@router.get("/experiments")
def experiments(page: PageDep) -> Response:
    """Every experiment, newest first, and the form to start one."""
    found = store.list_experiments(page.services.engine)
    return page.render(
        "experiments.html",
        {
            "title": "Experiments",
            "experiments": found,
            "running": [e for e in found if e.running],
            "can_run": page.session.can(Role.OPERATOR),
            "strategies": STRATEGIES,
            "rows": FORM_ROWS,
        },
    )


@router.post("/experiments")
def create(
    post: FormDep,
    name: Annotated[str, Form(max_length=200)] = "",
    unit: Annotated[str, Form(max_length=16)] = "customer",
    variant_name: Annotated[list[str] | None, Form(max_length=64)] = None,
    strategy: Annotated[list[str] | None, Form(max_length=32)] = None,
    weight: Annotated[list[str] | None, Form(max_length=16)] = None,
    model_version: Annotated[list[str] | None, Form(max_length=16)] = None,
) -> Response:
    """Start an experiment, as `POST /v1/experiments` does (one runs at a time)."""
    post.needs(Role.OPERATOR, "Starting an experiment")
    names, strategies = variant_name or [], strategy or []
    weights, versions = weight or [], model_version or []
    try:
        variants = []
        for i, variant in enumerate(names[:MAX_VARIANTS]):
            if not variant.strip():
                continue  # the form's spare rows
            text_weight = weights[i].strip() if i < len(weights) else ""
            text_version = versions[i].strip() if i < len(versions) else ""
            variants.append(
                Variant(
                    variant.strip(),
                    _strategy(variant, strategies[i] if i < len(strategies) else ""),
                    float(text_weight) if text_weight else 1.0,
                    int(text_version) if text_version else None,
                )
            )
        record = start_experiment(
            post.console.services, name, unit, variants, started_by=post.by, actor=post.actor
        )
    except (ValueError, NextOfferError) as exc:
        return post.redirect("/experiments", f"Not started: {exc}", "error")
    return post.redirect(f"/experiments/{record.experiment_id}", f"Started {record.name}.")


def _strategy(variant: str, text: str) -> Strategy:
    try:
        return Strategy(text)
    except ValueError:
        allowed = ", ".join(STRATEGIES)
        raise ValueError(f"variant {variant!r}: choose a strategy ({allowed})") from None


@dataclass(frozen=True)
class MetricView:
    """One metric of one variant against the control, as the page shows it."""

    variant: str
    result: MetricResult
    label: str
    control: str
    value: str
    difference: str
    interval: str
    adjusted_p: str
    tone: str
    """`up` (better), `down` (worse, or a guardrail harmed) when significant, else empty."""


def _rate(value: float) -> str:
    return f"{value * 100:.2f}\u00a0%"


def _points(value: float) -> str:
    return f"{value * 100:+.2f}\u00a0pts"


def _per_unit(value: float) -> str:
    return f"{value:.3f}"


def _per_unit_change(value: float) -> str:
    return f"{value:+.3f}"


def _p(value: float | None) -> str:
    if value is None:
        return "—"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


_LABELS = {
    Metric.CONVERSION: "conversion",
    Metric.CTR: "CTR",
    Metric.CHURN: "churn (guardrail)",
    Metric.COMPLAINTS: "complaints per {unit} (guardrail)",
}


def metric_view(variant: str, result: MetricResult, unit: str) -> MetricView:
    """The page's view of one metric row."""
    counts = result.metric is Metric.COMPLAINTS
    value, change = (_per_unit, _per_unit_change) if counts else (_rate, _points)

    def shown(x: float | None, show: Callable[[float], str]) -> str:
        return "—" if x is None else show(x)

    low, high = result.low, result.high
    tone = ""
    if result.significant and result.difference is not None:
        better = result.difference < 0 if result.guardrail else result.difference > 0
        tone = "up" if better else "down"
    return MetricView(
        variant=variant,
        result=result,
        label=_LABELS[result.metric].format(unit=unit),
        control=shown(result.control_value, value),
        value=shown(result.variant_value, value),
        difference=shown(result.difference, change),
        interval="" if low is None or high is None else f"{change(low)} to {change(high)}",
        adjusted_p=_p(result.adjusted_p),
        tone=tone,
    )


@router.get("/experiments/{experiment_id}")
def experiment(page: PageDep, experiment_id: ExperimentId) -> Response:
    """One experiment: design, the sample-ratio check, per variant its units and metrics."""
    try:
        found = experiment_results(page.services, experiment_id)
    except NotFoundError:
        raise PageError(404, "No such experiment", f"No experiment {experiment_id}.") from None
    stats = found.stats
    unit = found.experiment.unit.value
    metrics = [metric_view(v.variant, m, unit) for v in stats.variants for m in v.metrics]
    return page.render(
        "experiment.html",
        {
            "title": found.experiment.name,
            "experiment": found.experiment,
            "results": found,
            "stats": stats,
            "srm": stats.sample_ratio,
            "srm_alpha": SRM_ALPHA,
            "names": [v.name for v in found.experiment.variants],
            "metrics": metrics,
            "family": len(metrics),
            "can_run": page.session.can(Role.OPERATOR),
        },
    )


@router.post("/experiments/{experiment_id}/stop")
def stop(post: FormDep, experiment_id: ExperimentId) -> Response:
    """Stop assigning variants; the results stay."""
    post.needs(Role.OPERATOR, "Stopping an experiment")
    try:
        record = stop_experiment(post.console.services, experiment_id, actor=post.actor)
    except NotFoundError:
        raise PageError(404, "No such experiment", f"No experiment {experiment_id}.") from None
    return post.redirect(f"/experiments/{experiment_id}", f"Stopped {record.name}.")
