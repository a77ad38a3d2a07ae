"""What the offers caused: the latest treated vs control comparison (the impact job's)."""

from __future__ import annotations

from fastapi import APIRouter

from nextoffer.api.deps import ServicesDep, Viewer
from nextoffer.api.schemas import ImpactOut
from nextoffer.usecases.impact import get_impact

router = APIRouter(prefix="/v1/impact", tags=["impact"])


@router.get(
    "",
    response_model=ImpactOut,
    summary="Impact of the offers",
    responses={404: {"description": "no impact run yet: what to do is in the detail"}},
    name="get_impact",  # the operationId; the function's name is the use case's
)
def impact(services: ServicesDep, _caller: Viewer) -> ImpactOut:
    """The latest impact run: treated customers vs the universal control group.

    Each customer's first exposure in the period (an answer served, or held back for the
    control group) sets the arm; the window after it counts acquisitions of the offered
    products, their margin net of offer cost, and churn. Differences are treated minus
    control with 95 % intervals (Newcombe for rates, Welch for margin), overall and per
    segment; a group with too few customers in an arm says "not enough data yet". A 404
    problem says what to do while no run exists.
    """
    found = get_impact(services)
    return ImpactOut(run_id=found.run_id, **found.report.to_json())
