"""A/B experiments: create, watch (rates with intervals, tests, verdicts) and stop."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path
from starlette.responses import Response

from nextoffer.domain.errors import NextOfferError, NotFoundError
from nextoffer.domain.experiments import MAX_VARIANTS, Strategy, Variant
from nextoffer.domain.roles import Role
from nextoffer.store import experiments as store
from nextoffer.usecases.experiments import start_experiment, stop_experiment
from nextoffer.web.charts import Interval, interval_chart
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
        record = start_experiment(post.console.services, name, unit, variants, started_by=post.by)
    except (ValueError, NextOfferError) as exc:
        return post.redirect("/experiments", f"Not started: {exc}", "error")
    return post.redirect(f"/experiments/{record.experiment_id}", f"Started {record.name}.")


def _strategy(variant: str, text: str) -> Strategy:
    try:
        return Strategy(text)
    except ValueError:
        allowed = ", ".join(STRATEGIES)
        raise ValueError(f"variant {variant!r}: choose a strategy ({allowed})") from None


@router.get("/experiments/{experiment_id}")
def experiment(page: PageDep, experiment_id: ExperimentId) -> Response:
    """One experiment: design, and per variant its counts, rates, test and verdict."""
    engine = page.services.engine
    try:
        record = store.get_experiment(engine, experiment_id)
    except NotFoundError:
        raise PageError(404, "No such experiment", f"No experiment {experiment_id}.") from None
    results = store.experiment_results(engine, experiment_id)
    conversion = interval_chart(
        [
            Interval(v.variant, v.conversion.rate, v.conversion.low, v.conversion.high)
            for v in results.variants
        ],
        title="Conversion (accepts / impressions) with 95 % intervals",
        width=560,
    )
    ctr = interval_chart(
        [Interval(v.variant, v.ctr.rate, v.ctr.low, v.ctr.high) for v in results.variants],
        title="CTR (clicks / impressions) with 95 % intervals",
        width=560,
    )
    return page.render(
        "experiment.html",
        {
            "title": record.name,
            "experiment": record,
            "results": results,
            "conversion_chart": conversion,
            "ctr_chart": ctr,
            "can_run": page.session.can(Role.OPERATOR),
        },
    )


@router.post("/experiments/{experiment_id}/stop")
def stop(post: FormDep, experiment_id: ExperimentId) -> Response:
    """Stop assigning variants; the results stay."""
    post.needs(Role.OPERATOR, "Stopping an experiment")
    try:
        record = stop_experiment(post.console.services, experiment_id)
    except NotFoundError:
        raise PageError(404, "No such experiment", f"No experiment {experiment_id}.") from None
    return post.redirect(f"/experiments/{experiment_id}", f"Stopped {record.name}.")
