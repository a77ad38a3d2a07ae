"""Offer responses from the sales screen or app: impressions, clicks, accepts, declines."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Request, Response

from nextoffer.api.deps import ServicesDep, Writer
from nextoffer.api.routes.consent import ConsentEventIn
from nextoffer.api.schemas import EventBatchIn, EventIn, EventsOut, from_record
from nextoffer.domain.audit import Action
from nextoffer.serving.audit import request_actor
from nextoffer.usecases.consent import record_consent_event
from nextoffer.usecases.responses import OfferResponse, record_responses

router = APIRouter(prefix="/v1/events", tags=["events"])


@router.post(
    "",
    response_model=EventsOut,
    status_code=201,
    summary="Record offer events",
    responses={
        202: {"model": EventsOut, "description": "spooled: the database is down"},
        404: {"description": "a consent event names no stored customer"},
    },
)
def post_events(
    body: Annotated[EventIn | ConsentEventIn | EventBatchIn, Body()],
    services: ServicesDep,
    _caller: Writer,
    response: Response,
    request: Request,
) -> EventsOut:
    """Store one event or a batch; impressions count against the contact caps.

    Every event has an id (the client's, else one assigned here) and storing is idempotent
    on it: a retry never counts twice. Events naming an unknown customer or product are
    listed under `rejected` (422 when every event of the request is); the others are
    stored. While the database is down the events are kept in a local spool (202) and
    stored when it returns.

    A consent event (`consent_granted`, `consent_withdrawn`, one at a time) changes the
    customer's consent for its channel at its time (docs/consent.md); it is kept in the
    consent history, not with the offer events.
    """
    if isinstance(body, ConsentEventIn):
        event_id = body.event_id or str(uuid.uuid4())
        granted = body.event_type == "consent_granted"
        record_consent_event(services, body.customer_id, body.channel, granted, body.ts)
        actor = request_actor(request.scope)
        if actor is not None:  # the path names no customer: the trail is written here
            services.audit.change(
                actor,
                Action.CONSENT_CHANGE,
                f"event {body.channel}",
                customer_id=body.customer_id,
                detail={"granted": granted},
            )
        return EventsOut(accepted=1, stored=1, duplicates=0, spooled=0, event_ids=[event_id])
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
