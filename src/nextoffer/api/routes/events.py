"""Offer responses from the sales screen or app: impressions, clicks, accepts, declines."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Response

from nextoffer.api.deps import ServicesDep, Writer
from nextoffer.api.schemas import EventBatchIn, EventIn, EventsOut, from_record
from nextoffer.usecases.responses import OfferResponse, record_responses

router = APIRouter(prefix="/v1/events", tags=["events"])


@router.post(
    "",
    response_model=EventsOut,
    status_code=201,
    summary="Record offer events",
    responses={202: {"model": EventsOut, "description": "spooled: the database is down"}},
)
def post_events(
    body: Annotated[EventIn | EventBatchIn, Body()],
    services: ServicesDep,
    _caller: Writer,
    response: Response,
) -> EventsOut:
    """Store one event or a batch; impressions count against the contact caps.

    Every event has an id (the client's, else one assigned here) and storing is idempotent
    on it: a retry never counts twice. Events naming an unknown customer or product are
    listed under `rejected` (422 when every event of the request is); the others are
    stored. While the database is down the events are kept in a local spool (202) and
    stored when it returns.
    """
    items = body.events if isinstance(body, EventBatchIn) else [body]
    recorded = record_responses(services, [OfferResponse(**item.model_dump()) for item in items])
    result = recorded.result
    if result.spooled:
        response.status_code = 202
    return from_record(
        EventsOut,
        result,
        accepted=result.stored + result.duplicates + result.spooled,
        event_ids=recorded.event_ids,
        rejected=[{"event_id": r.event_id, "reason": r.reason} for r in result.rejected],
    )
