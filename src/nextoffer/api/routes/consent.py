"""A customer's marketing consent: read it with its history, change it (writers)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Path
from pydantic import BaseModel, Field, StrictBool

from nextoffer.api.deps import ServicesDep, Viewer, Writer
from nextoffer.api.schemas import InputModel, example
from nextoffer.domain.contact import CHANNELS
from nextoffer.domain.vocabulary import ID_PATTERN
from nextoffer.usecases.consent import ConsentState, consent_state, set_consent

router = APIRouter(prefix="/v1/customers", tags=["customers"])

CustomerId = Annotated[str, Path(pattern=ID_PATTERN, description="the customer's id")]
Scope = Literal["retail", "web", "app", "call_center", "telesales", "contact", "profiling"]


class ConsentIn(InputModel):
    """Consent changes, made now: per channel, and for all contact or profiling."""

    model_config = example(
        {"channels": {"telesales": False, "web": True}, "do_not_contact": False},
        extra="forbid",
    )

    channels: dict[Scope, StrictBool] = Field(
        default_factory=dict,
        description="marketing consent per channel: true given, false withdrawn",
    )
    do_not_contact: StrictBool | None = Field(
        None, description="true: no offer in any channel; false: lifts it"
    )
    objects_to_profiling: StrictBool | None = Field(
        None,
        description="true: offered segment-free popular products only, never a model's; "
        "false: lifts it",
    )


class ConsentEventIn(InputModel):
    """A consent event (`POST /v1/events`): a channel's consent given or withdrawn."""

    model_config = example(
        {
            "customer_id": "C00000042",
            "event_type": "consent_withdrawn",
            "channel": "telesales",
            "ts": "2026-11-23T10:00:00Z",
        },
        extra="forbid",
    )

    event_id: str | None = Field(
        None, pattern=ID_PATTERN, description="the client's id; assigned on receipt when absent"
    )
    customer_id: str = Field(pattern=ID_PATTERN)
    event_type: Literal["consent_granted", "consent_withdrawn"]
    channel: Scope = Field(description="a channel, `contact` (all contact) or `profiling`")
    ts: datetime | None = Field(None, description="when it happened; default: on receipt")


class ConsentChangeOut(BaseModel):
    """One recorded change."""

    channel: str = Field(description="a channel, `contact` (do not contact) or `profiling`")
    granted: bool
    changed_at: datetime
    source: Literal["import", "api", "event"]


class ConsentOut(BaseModel):
    """The customer's consent in force, what it allows now, and every change."""

    model_config = example(
        {
            "customer_id": "C00000042",
            "channels": {
                "retail": True,
                "web": True,
                "app": True,
                "call_center": None,
                "telesales": False,
            },
            "do_not_contact": False,
            "objects_to_profiling": False,
            "do_not_call": False,
            "timezone": "Europe/Berlin",
            "open_now": ["app", "retail", "web"],
            "closed_now": {"call_center": "no_consent", "telesales": "no_consent"},
            "history": [
                {
                    "channel": "telesales",
                    "granted": False,
                    "changed_at": "2026-11-23T10:00:00Z",
                    "source": "api",
                }
            ],
        }
    )

    customer_id: str
    channels: dict[str, bool | None] = Field(
        description="per channel: true given, false withdrawn, null nothing recorded"
    )
    do_not_contact: bool
    objects_to_profiling: bool
    do_not_call: bool
    timezone: str | None = Field(description="the customer's own zone, if recorded")
    open_now: list[str] = Field(description="channels an offer may be made in now")
    closed_now: dict[str, str] = Field(
        description="closed channels and why: no_consent, do_not_contact, do_not_call, quiet_hours"
    )
    history: list[ConsentChangeOut] = Field(description="every change, oldest first")


def _out(state: ConsentState) -> ConsentOut:
    facts, decision = state.facts, state.decision
    return ConsentOut(
        customer_id=state.customer_id,
        channels={c: facts.consent.get(c) for c in CHANNELS},
        do_not_contact=facts.do_not_contact,
        objects_to_profiling=facts.objects_to_profiling,
        do_not_call=facts.do_not_call,
        timezone=facts.timezone,
        open_now=sorted(decision.allowed),
        closed_now={c: r.value for c, r in sorted(decision.blocked.items())},
        history=[
            ConsentChangeOut(
                channel=c.channel,
                granted=c.granted,
                changed_at=c.changed_at,
                source=c.source,
            )
            for c in state.history
        ],
    )


@router.get("/{customer_id}/consent", response_model=ConsentOut, summary="Consent")
def get_consent(customer_id: CustomerId, services: ServicesDep, _caller: Viewer) -> ConsentOut:
    """The customer's consent per channel, do-not-contact, do-not-call, and its history."""
    return _out(consent_state(services, customer_id))


@router.put("/{customer_id}/consent", response_model=ConsentOut, summary="Change consent")
def put_consent(
    customer_id: CustomerId,
    body: Annotated[ConsentIn, Body()],
    services: ServicesDep,
    _caller: Writer,
) -> ConsentOut:
    """Record consent changes now (source `api`); the next answer follows them at once.

    Channels not named keep their consent. The change is kept in the history with its
    time and source, and the customer's cached answers are dropped.
    """
    changes: dict[str, bool] = {str(k): v for k, v in body.channels.items()}
    if body.do_not_contact is not None:
        changes["contact"] = not body.do_not_contact
    if body.objects_to_profiling is not None:
        changes["profiling"] = not body.objects_to_profiling
    return _out(set_consent(services, customer_id, changes, source="api"))
