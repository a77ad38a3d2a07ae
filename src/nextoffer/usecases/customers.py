"""Customer 360: everything about one customer, with the offers exactly as the API answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nextoffer.domain.attributes import AttributeRole, AttributeSpec, display_value
from nextoffer.domain.errors import NotFoundError
from nextoffer.serving import insights
from nextoffer.serving.insights import ChurnRisk, SegmentAnswer
from nextoffer.serving.offers import OffersAnswer
from nextoffer.store.reads import customers
from nextoffer.store.reads.attributes import attribute_schema
from nextoffer.store.reads.customers import Activity, Holding, Profile
from nextoffer.usecases.consent import ConsentState, consent_state
from nextoffer.usecases.context import Services
from nextoffer.usecases.offers import OfferRequest, answer_offers


@dataclass(frozen=True)
class AttributeValue:
    """One custom attribute of a customer, as the console shows it."""

    name: str
    kind: str
    role: str
    value: Any
    text: str


@dataclass(frozen=True)
class CustomerView:
    """One customer's profile, segment, churn risk, offers, holdings and recent activity."""

    profile: Profile
    segment: SegmentAnswer | None
    risk: ChurnRisk | None
    offers: OffersAnswer
    holdings: list[Holding]
    transactions: list[Activity]
    events: list[Activity]
    attributes: list[AttributeValue] = field(default_factory=list)
    """Custom attributes of role feature, display and label, by name, with their kinds."""
    consent: ConsentState | None = None
    """Consent in force, what it allows now and its history (None: records unreadable)."""


def shown_attributes(schema: list[AttributeSpec], stored: dict[str, Any]) -> list[AttributeValue]:
    """The customer's stored attributes that the schema does not ignore, by name."""
    return [
        AttributeValue(
            spec.name,
            spec.kind.value,
            spec.role.value,
            stored[spec.name],
            display_value(spec.kind, stored[spec.name]),
        )
        for spec in schema
        if spec.role is not AttributeRole.IGNORE and spec.name in stored
    ]


def customer_360(
    services: Services, customer_id: str, *, history: int = 52, recent: int = 10
) -> CustomerView:
    """The customer seen whole; NotFoundError when there is no such customer.

    A customer not yet segmented or scored still has a view: those parts are None. The
    offers come from `answer_offers`, so they are what the API answers at this moment (an
    operator looking is no exposure of the customer, so none is recorded).
    """
    engine = services.read_engine
    profile = customers.profile(engine, customer_id)
    if profile is None:
        raise NotFoundError(f"there is no customer with id {customer_id}")
    try:
        segment: SegmentAnswer | None = insights.segment_of(engine, services.cache, customer_id)
    except NotFoundError:
        segment = None
    try:
        risk: ChurnRisk | None = insights.churn_risk(engine, services.state, customer_id, history)
    except NotFoundError:
        risk = None
    return CustomerView(
        profile=profile,
        segment=segment,
        risk=risk,
        offers=answer_offers(services, OfferRequest(customer_id, record_exposure=False)),
        holdings=customers.holdings(engine, customer_id, services.clock().date()),
        transactions=customers.recent_transactions(engine, customer_id, recent),
        events=customers.recent_events(engine, customer_id, recent),
        attributes=shown_attributes(attribute_schema(engine), profile.attributes),
        consent=consent_state(services, customer_id),
    )
