"""Offer responses from the sales screen or app: impressions, clicks, accepts, declines."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Body, Response

from nextoffer.api.deps import ServicesDep, Writer
from nextoffer.api.problems import ProblemError
from nextoffer.api.schemas import EventBatchIn, EventIn, EventsOut
from nextoffer.serving.events import OfferEvent
from nextoffer.store.runs import utcnow

router = APIRouter(prefix="/v1/events", tags=["events"])

# Clients' clocks drift; an event a few minutes "ahead" is still plausible.
_SKEW = timedelta(minutes=5)


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
    now = utcnow()
    events = []
    for item in items:
        experiment_id, variant = item.experiment_id, item.variant
        if experiment_id is None:
            assignment = services.experiments.variant_for(item.customer_id, item.session_id)
            if assignment is not None:
                experiment_id, variant = assignment[0].experiment_id, assignment[1].name
        ts = item.ts or now
        if ts.tzinfo is None:
            raise ProblemError(422, "ts needs a time zone (e.g. 2026-11-23T10:00:00Z)")
        if ts > now.replace(microsecond=0) + _SKEW:
            raise ProblemError(422, f"ts {ts.isoformat()} is in the future")
        events.append(
            OfferEvent(
                event_id=item.event_id or str(uuid.uuid4()),
                customer_id=item.customer_id,
                event_type=item.event_type,  # type: ignore[arg-type]
                product_id=item.product_id,
                ts=ts,
                channel=item.channel,
                session_id=item.session_id,
                experiment_id=experiment_id,
                variant=variant,
            )
        )
    ids = [e.event_id for e in events]
    if len(set(ids)) != len(ids):
        raise ProblemError(422, "event_id values repeat within the batch")
    result = services.events.record(events)
    rejected = [{"event_id": r.event_id, "reason": r.reason} for r in result.rejected]
    if rejected and len(rejected) == len(events):
        first = result.rejected[0]
        raise ProblemError(
            422,
            f"no event stored: {first.event_id}: {first.reason}",
            kind="validation-error",
            extra={"rejected": rejected},
        )
    refused = {r.event_id for r in result.rejected}
    for event in (e for e in events if e.event_id not in refused):
        services.metrics.events.labels(
            event.event_type, event.experiment_id or "", event.variant or ""
        ).inc()
        services.offers.forget(event.customer_id)
    if result.spooled:
        services.metrics.events_spooled.inc(result.spooled)
        response.status_code = 202
    return EventsOut(
        accepted=result.stored + result.duplicates + result.spooled,
        stored=result.stored,
        duplicates=result.duplicates,
        spooled=result.spooled,
        event_ids=[i for i in ids if i not in refused],
        rejected=rejected,
    )
