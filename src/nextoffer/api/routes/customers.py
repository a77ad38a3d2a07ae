"""Per-customer answers: next-best offers, churn risk, segment."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Path, Query

from nextoffer.api.deps import ServicesDep, Viewer
from nextoffer.api.schemas import ChurnRiskOut, OffersOut, SegmentOut
from nextoffer.domain.vocabulary import ID_PATTERN
from nextoffer.serving import insights
from nextoffer.usecases.offers import OfferRequest, answer_offers

router = APIRouter(prefix="/v1/customers", tags=["customers"])

CustomerId = Annotated[str, Path(pattern=ID_PATTERN, description="the customer's id")]


@router.get("/{customer_id}/offers", response_model=OffersOut, summary="Next-best offers")
def get_offers(
    customer_id: CustomerId,
    services: ServicesDep,
    _caller: Viewer,
    k: Annotated[int | None, Query(ge=1, le=50, description="how many offers")] = None,
    channel: Annotated[
        str | None, Query(max_length=32, description="only offers allowed in this channel")
    ] = None,
    session_id: Annotated[
        str | None, Query(max_length=128, description="for session-level experiments")
    ] = None,
) -> OffersOut:
    """The customer's next-best offers after business rules, best first.

    Answered from the cache, else the precomputed table, else live scoring with the
    champion, else popular products in the customer's segment; `source` says which, and
    `degraded` is true when a backend was down. A running experiment may assign the
    customer (or session) to a variant that serves another strategy, or none (control).
    """
    answer = answer_offers(
        services, OfferRequest(customer_id, k=k, channel=channel, session_id=session_id)
    )
    return OffersOut.model_validate(answer)


@router.get("/{customer_id}/churn-risk", response_model=ChurnRiskOut, summary="Churn risk")
def get_churn_risk(
    customer_id: CustomerId,
    services: ServicesDep,
    _caller: Viewer,
    history: Annotated[int, Query(ge=1, le=365, description="past scores to include")] = 52,
) -> ChurnRiskOut:
    """Latest churn score, its band and top reasons, and the score history (oldest first)."""
    risk = insights.churn_risk(services.read_engine, services.state, customer_id, history)
    return ChurnRiskOut.model_validate(dataclasses.asdict(risk))


@router.get("/{customer_id}/segment", response_model=SegmentOut, summary="Segment")
def get_segment(customer_id: CustomerId, services: ServicesDep, _caller: Viewer) -> SegmentOut:
    """The customer's segment, what characterises it and how big it is."""
    answer = insights.segment_of(services.read_engine, services.cache, customer_id)
    return SegmentOut(**dataclasses.asdict(answer))
