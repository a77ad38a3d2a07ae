"""Record customers' responses to offers: impressions, clicks, accepts and declines."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from nextoffer.domain.errors import InvalidRequestError
from nextoffer.domain.vocabulary import EventType
from nextoffer.serving.events import OfferEvent, RecordResult
from nextoffer.usecases.context import Services
from nextoffer.usecases.offers import assignment_for

# Clients' clocks drift; an event a few minutes "ahead" is still plausible.
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class OfferResponse:
    """One response as a client reports it; missing ids and times are filled in here."""

    customer_id: str
    event_type: EventType | str
    product_id: str
    event_id: str | None = None
    ts: datetime | None = None
    channel: str | None = None
    session_id: str | None = None
    experiment_id: str | None = None
    variant: str | None = None


@dataclass(frozen=True)
class Recorded:
    """What happened to a request's events: stored, repeated, spooled or rejected."""

    result: RecordResult
    event_ids: list[str]
    """Ids of the events that were not rejected, in request order."""


def record_responses(services: Services, responses: Sequence[OfferResponse]) -> Recorded:
    """Store responses idempotently (on event id), tagged with the customer's variant.

    An event is tagged with the running experiment's variant of its customer (or session),
    looked up here and never taken from the client, so the experiment counts what its
    variants caused; a client's `experiment_id`/`variant` that differs from the assignment
    refuses the request (InvalidRequestError, kind validation-error, naming the expected
    values). The universal control group is in no experiment.
    Impressions count against contact caps (the writer keeps contact history). Every stored
    customer's cached answer is dropped, so an accepted product leaves the next answer at
    once. Raises InvalidRequestError when the request cannot be taken as a whole (a time
    without a zone or in the future, repeated ids, every event rejected).
    """
    now = services.clock()
    events = [_event(services, response, now) for response in responses]
    ids = [e.event_id for e in events]
    if len(set(ids)) != len(ids):
        raise InvalidRequestError("event_id values repeat within the batch")
    result = services.events.record(events)
    rejected = [{"event_id": r.event_id, "reason": r.reason} for r in result.rejected]
    if rejected and len(rejected) == len(events):
        first = result.rejected[0]
        raise InvalidRequestError(
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
    return Recorded(result, [i for i in ids if i not in refused])


def _assigned(services: Services, response: OfferResponse) -> tuple[str | None, str | None]:
    """The event's experiment and variant, from the assignment; a client's differing tag refused.

    A forged tag (a control customer's events tagged with the treatment variant) would
    otherwise move an experiment's results at will.
    """
    assignment = assignment_for(services, response.customer_id, response.session_id)
    expected = (assignment[0].experiment_id, assignment[1].name) if assignment else (None, None)
    given = (response.experiment_id, response.variant)
    if any(g is not None and g != e for g, e in zip(given, expected, strict=True)):
        by_session = assignment and assignment[0].unit == "session" and response.session_id
        unit = f"session {response.session_id!r}" if by_session else "customer"
        want = (
            f"experiment_id {expected[0]!r}, variant {expected[1]!r}"
            if assignment
            else "no experiment (none is running for it)"
        )
        raise InvalidRequestError(
            f"event for customer {response.customer_id!r} is tagged experiment_id "
            f"{given[0]!r}, variant {given[1]!r}, but the {unit} is assigned {want}; "
            "leave experiment_id and variant out and the server fills them in",
            kind="validation-error",
            extra={
                "customer_id": response.customer_id,
                "expected": {"experiment_id": expected[0], "variant": expected[1]},
            },
        )
    return expected


def _event(services: Services, response: OfferResponse, now: datetime) -> OfferEvent:
    experiment_id, variant = _assigned(services, response)
    ts = response.ts or now
    if ts.tzinfo is None:
        raise InvalidRequestError("ts needs a time zone (e.g. 2026-11-23T10:00:00Z)")
    if ts > now.replace(microsecond=0) + CLOCK_SKEW:
        raise InvalidRequestError(f"ts {ts.isoformat()} is in the future")
    try:
        return OfferEvent(
            event_id=response.event_id or str(uuid.uuid4()),
            customer_id=response.customer_id,
            event_type=response.event_type,  # type: ignore[arg-type]  # checked by OfferEvent
            product_id=response.product_id,
            ts=ts,
            channel=response.channel,
            session_id=response.session_id,
            experiment_id=experiment_id,
            variant=variant,
        )
    except ValueError as exc:
        raise InvalidRequestError(str(exc), kind="validation-error") from None
