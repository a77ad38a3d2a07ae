"""Answers for many customers in one call: offers and churn risk, each as the single call's.

A batch of N ids counts N requests against the caller's rate limit, all or nothing: when
fewer than N remain in the minute, the call is refused (429, Retry-After) and nothing is
answered. Each id gets exactly what its single call would answer, through the same use
case; an id the single call would answer 404 for (an unknown customer, no churn score
yet) gets a problem entry in its place and the others are still answered. Every
customer's read is audited, one entry each, as the single calls are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from http import HTTPStatus
from typing import Annotated, TypeVar

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, field_validator

from nextoffer.api.deps import PlatformDep, ServicesDep, Viewer
from nextoffer.api.problems import PROBLEM_TYPE_BASE
from nextoffer.api.schemas import ChurnRiskOut, InputModel, OffersOut, example
from nextoffer.domain.audit import Action, AuditEntry
from nextoffer.domain.errors import NextOfferError, NotFoundError
from nextoffer.domain.vocabulary import ID_PATTERN
from nextoffer.serving import insights
from nextoffer.serving.accounts import Principal
from nextoffer.serving.audit import request_actor
from nextoffer.usecases.context import Services
from nextoffer.usecases.offers import OfferRequest, answer_offers_each

router = APIRouter(prefix="/v1", tags=["customers"])

Item = TypeVar("Item", "OffersItemOut", "ChurnRiskItemOut")

MAX_BATCH = 1000
"""Customer ids per batch call."""

BatchIds = Annotated[
    list[Annotated[str, Field(pattern=ID_PATTERN)]],
    Field(
        min_length=1,
        max_length=MAX_BATCH,
        description=f"1 to {MAX_BATCH} distinct customer ids; answers come in this order",
    ),
]


def _distinct(ids: list[str]) -> list[str]:
    seen: set[str] = set()
    for customer_id in ids:
        if customer_id in seen:
            raise ValueError(f"customer id {customer_id!r} is listed twice")
        seen.add(customer_id)
    return ids


class OffersBatchIn(InputModel):
    """Customers to answer, with the options `GET /v1/customers/{id}/offers` takes."""

    model_config = example({"customer_ids": ["C000001", "C000002"], "k": 3, "channel": "app"})

    customer_ids: BatchIds
    k: int | None = Field(None, ge=1, le=50, description="how many offers")
    channel: str | None = Field(
        None, max_length=32, description="only offers allowed in this channel"
    )
    session_id: str | None = Field(
        None, max_length=128, description="for session-level experiments"
    )

    @field_validator("customer_ids")
    @classmethod
    def _no_duplicates(cls, ids: list[str]) -> list[str]:
        return _distinct(ids)


class ChurnRiskBatchIn(InputModel):
    """Customers to answer, with the options `GET /v1/customers/{id}/churn-risk` takes."""

    model_config = example({"customer_ids": ["C000001", "C000002"], "history": 4})

    customer_ids: BatchIds
    history: int = Field(52, ge=1, le=365, description="past scores to include")

    @field_validator("customer_ids")
    @classmethod
    def _no_duplicates(cls, ids: list[str]) -> list[str]:
        return _distinct(ids)


class ItemProblemOut(BaseModel):
    """Why one id of a batch has no answer: the problem its single call would answer."""

    type: str
    title: str
    status: int
    detail: str


class OffersItemOut(BaseModel):
    """One customer's offers (as the single call answers them), or its problem."""

    customer_id: str
    status: int = Field(description="200, or the status the single call answers (404)")
    answer: OffersOut | None = Field(description="the single call's body; null on a problem")
    problem: ItemProblemOut | None = None


class OffersBatchOut(BaseModel):
    """One item per requested id, in request order."""

    items: list[OffersItemOut]
    answered: int = Field(description="items with an answer")
    failed: int = Field(description="items with a problem")


class ChurnRiskItemOut(BaseModel):
    """One customer's churn risk (as the single call answers it), or its problem."""

    customer_id: str
    status: int = Field(description="200, or the status the single call answers (404)")
    answer: ChurnRiskOut | None = Field(description="the single call's body; null on a problem")
    problem: ItemProblemOut | None = None


class ChurnRiskBatchOut(BaseModel):
    """One item per requested id, in request order."""

    items: list[ChurnRiskItemOut]
    answered: int = Field(description="items with an answer")
    failed: int = Field(description="items with a problem")


@router.post(
    "/offers:batch",
    response_model=OffersBatchOut,
    summary="Next-best offers for many customers",
)
def post_offers_batch(
    body: OffersBatchIn,
    services: ServicesDep,
    platform: PlatformDep,
    caller: Viewer,
    request: Request,
) -> OffersBatchOut:
    """Each customer's next-best offers, exactly as `GET /v1/customers/{id}/offers` answers.

    Up to 1,000 distinct ids; the answers come in request order. Counts one request per id
    against the rate limit (429 and nothing answered when fewer remain). An unknown
    customer gets a problem item (status 404) and the others are answered; exposures,
    experiments and the contact policy apply to each customer as for a single call.
    """
    _charge(platform, caller, len(body.customer_ids))
    requests = [
        OfferRequest(customer_id, k=body.k, channel=body.channel, session_id=body.session_id)
        for customer_id in body.customer_ids
    ]
    items: list[OffersItemOut] = []
    for customer_id, found in zip(
        body.customer_ids, answer_offers_each(services, requests), strict=True
    ):
        if isinstance(found, NotFoundError):
            items.append(_failed(OffersItemOut, customer_id, found))
        else:
            items.append(
                OffersItemOut(
                    customer_id=customer_id,
                    status=200,
                    answer=OffersOut.model_validate(found),
                )
            )
    _audit(services, request, "POST /v1/offers:batch", items)
    return OffersBatchOut(
        items=items,
        answered=sum(item.problem is None for item in items),
        failed=sum(item.problem is not None for item in items),
    )


@router.post(
    "/churn-risk:batch",
    response_model=ChurnRiskBatchOut,
    summary="Churn risk for many customers",
)
def post_churn_risk_batch(
    body: ChurnRiskBatchIn,
    services: ServicesDep,
    platform: PlatformDep,
    caller: Viewer,
    request: Request,
) -> ChurnRiskBatchOut:
    """Each customer's churn risk, exactly as `GET /v1/customers/{id}/churn-risk` answers.

    Up to 1,000 distinct ids; the answers come in request order. Counts one request per id
    against the rate limit (429 and nothing answered when fewer remain). A customer that
    is unknown or not scored yet gets a problem item (status 404).
    """
    _charge(platform, caller, len(body.customer_ids))
    found = insights.churn_risks(services.engine, services.state, body.customer_ids, body.history)
    items: list[ChurnRiskItemOut] = []
    for customer_id, risk in zip(body.customer_ids, found, strict=True):
        if isinstance(risk, NotFoundError):
            items.append(_failed(ChurnRiskItemOut, customer_id, risk))
            continue
        answer = ChurnRiskOut.model_validate(dataclasses.asdict(risk))
        items.append(ChurnRiskItemOut(customer_id=customer_id, status=200, answer=answer))
    _audit(services, request, "POST /v1/churn-risk:batch", items)
    return ChurnRiskBatchOut(
        items=items,
        answered=sum(item.problem is None for item in items),
        failed=sum(item.problem is not None for item in items),
    )


def _charge(platform: PlatformDep, caller: Principal, n: int) -> None:
    """Count the batch's other n - 1 requests (authentication counted the first)."""
    platform.limiter.take(f"{caller.kind}:{caller.id}", n - 1, platform.services.metrics)


def _failed(item: type[Item], customer_id: str, error: NextOfferError) -> Item:
    """The problem item of an id whose single call answers `error` (404 for NotFoundError)."""
    status = HTTPStatus.NOT_FOUND
    problem = ItemProblemOut(
        type=PROBLEM_TYPE_BASE + status.phrase.lower().replace(" ", "-"),
        title=status.phrase,
        status=int(status),
        detail=str(error),
    )
    return item(customer_id=customer_id, status=int(status), answer=None, problem=problem)


def _audit(
    services: Services,
    request: Request,
    target: str,
    items: Sequence[OffersItemOut | ChurnRiskItemOut],
) -> None:
    """One `customer.read` per customer of the batch, each with its own status (digests only).

    The audit middleware records routes naming one customer in their path; a batch names
    its customers in the body, so it records them here, as the single calls would be.
    """
    actor = request_actor(request.scope)
    if actor is None or not services.audit.enabled:
        return
    for item in items:
        services.audit.record(
            AuditEntry.of(
                actor,
                Action.CUSTOMER_READ,
                target,
                customer_digest=services.audit.digest(item.customer_id),
                detail={"status": item.status},
            )
        )
