"""Customer reads: exists, search by name, profile, holdings, recent activity, segment."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, or_, select

from nextoffer.domain.results import from_attributes
from nextoffer.store.reads._sql import (
    Bind,
    as_date,
    connect,
    first_row,
    newest_first,
    optional_float,
)
from nextoffer.store.schema import (
    Customer,
    Event,
    Product,
    Segment,
    Subscription,
    Transaction,
    UserFeatures,
)


def customer_exists(bind: Bind, customer_id: str) -> bool:
    """True when the id is a customer's (a primary-key lookup)."""
    with connect(bind) as conn:
        found = conn.execute(
            select(Customer.customer_id).where(Customer.customer_id == customer_id)
        ).first()
    return found is not None


@dataclass(frozen=True)
class CustomerHit:
    """A search result."""

    customer_id: str
    display_name: str
    region: str
    contract_type: str


def name_variants(text: str) -> list[str]:
    """The spellings of a typed name prefix that are searched: as typed, lower, Title, UPPER.

    Case-insensitive matching through a plain index: each spelling is one index range, so
    "hana hu" finds "Hana Hughes". A name cased unusually ("McDonald") is found when typed
    with its own capitals.
    """
    typed = " ".join(text.split())
    variants = [typed, typed.lower(), typed.title(), typed.upper(), typed.capitalize()]
    return [v for i, v in enumerate(variants) if v and v not in variants[:i]]


def search_customers(
    bind: Bind, text: str, *, after: tuple[str, str] | None = None, limit: int = 25
) -> list[CustomerHit]:
    """Customers whose name starts with `text` (see `name_variants`), by name then id.

    Every spelling is a prefix range on `ix_customers_display_name`: LIKE 'prefix%' on
    PostgreSQL, whose index has the pattern operator class (migration 0004), and a plain
    range on SQLite, which compares text bytewise. Pages are keyset: `after` is the last
    (display_name, customer_id) shown.
    """
    name = Customer.display_name
    spellings = name_variants(text)
    if not spellings:
        return []
    with connect(bind) as conn:
        matches: list[ColumnElement[bool]]
        if conn.dialect.name == "postgresql":
            matches = [name.like(_like_escape(v) + "%", escape="\\") for v in spellings]
        else:
            matches = [and_(name >= v, name < v + "\U0010ffff") for v in spellings]
        query = (
            select(Customer.customer_id, name, Customer.region, Customer.contract_type)
            .where(or_(*matches))
            .order_by(name, Customer.customer_id)
            .limit(limit)
        )
        if after is not None:
            key, customer_id = after
            query = query.where(
                or_(name > key, and_(name == key, Customer.customer_id > customer_id))
            )
        return [
            CustomerHit(r.customer_id, r.display_name, r.region, r.contract_type)
            for r in conn.execute(query)
        ]


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class Profile:
    """A customer's master data and the name of their plan."""

    customer_id: str
    display_name: str | None
    age_band: str
    region: str
    signup_date: date
    contract_type: str
    payment_method: str
    plan_id: str | None
    plan_name: str | None
    arpu: float | None
    data_gb_month: float | None
    voice_min_month: float | None
    attributes: dict[str, Any]
    """Custom attributes as stored ({} for none); `reads.attributes` has their kinds."""

    @property
    def name(self) -> str:
        """What to call the customer: the display name, or the id when there is none."""
        return self.display_name or self.customer_id


# Columns the driver returns as other types: SQLite's text days, PostgreSQL's Decimals.
_PROFILE_TYPES: dict[str, Callable[[Any], Any]] = {
    "signup_date": as_date,
    "arpu": optional_float,
    "data_gb_month": optional_float,
    "voice_min_month": optional_float,
    "attributes": lambda stored: dict(stored) if isinstance(stored, dict) else {},
}


def profile(bind: Bind, customer_id: str) -> Profile | None:
    """The customer's row and plan name, or None for an unknown id."""
    query = (
        select(Customer, Product.name.label("plan_name"))
        .join(Product, Product.product_id == Customer.plan_id, isouter=True)
        .where(Customer.customer_id == customer_id)
    )
    return first_row(bind, query, Profile, **_PROFILE_TYPES)


@dataclass(frozen=True)
class Holding:
    """A product the customer holds now."""

    product_id: str
    name: str
    category: str
    start_date: date
    monthly_price: float | None


def holdings(bind: Bind, customer_id: str, today: date, limit: int = 50) -> list[Holding]:
    """Subscriptions open today (no end, or an end after today), newest first."""
    query = (
        select(
            Subscription.product_id,
            Product.name,
            Product.category,
            Subscription.start_date,
            Subscription.monthly_price,
        )
        .join(Product, Product.product_id == Subscription.product_id)
        .where(
            Subscription.customer_id == customer_id,
            or_(Subscription.end_date.is_(None), Subscription.end_date > today),
        )
        .order_by(Subscription.start_date.desc())
        .limit(limit)
    )
    with connect(bind) as conn:
        return [
            from_attributes(Holding, r, start_date=as_date, monthly_price=optional_float)
            for r in conn.execute(query)
        ]


@dataclass(frozen=True)
class Activity:
    """A transaction or an event, for the customer's recent history."""

    ts: datetime
    kind: str
    product_id: str | None
    channel: str | None
    amount: float | None


def recent_transactions(bind: Bind, customer_id: str, limit: int = 10) -> list[Activity]:
    """The latest transactions (on `ix_transactions_customer_ts`)."""
    query = newest_first(Transaction, customer_id, Transaction.ts, limit)
    with connect(bind) as conn:
        return [
            Activity(r.ts, r.type, r.product_id, r.channel, float(r.amount))
            for r in conn.execute(query)
        ]


def recent_events(bind: Bind, customer_id: str, limit: int = 10) -> list[Activity]:
    """The latest events (on `ix_events_customer_ts`)."""
    query = newest_first(Event, customer_id, Event.ts, limit)
    with connect(bind) as conn:
        return [
            Activity(r.ts, r.event_type, r.product_id, r.channel, None) for r in conn.execute(query)
        ]


@dataclass(frozen=True)
class SegmentRecord:
    """The segment the latest features put a customer in, and what is known of it."""

    customer_id: str
    segment_id: int
    features_as_of: datetime
    known: bool
    """False when the features name a segment the `segments` table does not (yet) hold."""
    name: str
    description: str
    size: int


def _segment_record(customer_id: str, row: Any) -> SegmentRecord:
    # `known` is the segments table's id: None when the features name an unknown segment.
    segment_id = int(row.segment_id or 0)
    if row.known is None:
        return SegmentRecord(
            customer_id, segment_id, row.as_of, False, f"segment {row.segment_id}", "", 0
        )
    return SegmentRecord(
        customer_id,
        segment_id,
        row.as_of,
        True,
        str(row.name),
        str(row.description),
        int(row.size or 0),
    )


def _segments() -> Select[str, int | None, datetime, int, str, str, int]:
    """Customers' segment ids from `user_features`, with what `segments` knows of each."""
    return select(
        UserFeatures.customer_id,
        UserFeatures.segment_id,
        UserFeatures.as_of,
        Segment.segment_id.label("known"),
        Segment.name,
        Segment.description,
        Segment.size,
    ).join(Segment, Segment.segment_id == UserFeatures.segment_id, isouter=True)


def segment_of(bind: Bind, customer_id: str) -> SegmentRecord | None:
    """The customer's segment from `user_features`, or None before features put them in one."""
    query = _segments().where(UserFeatures.customer_id == customer_id)
    with connect(bind) as conn:
        row = conn.execute(query).first()
    if row is None or row.segment_id is None:
        return None
    return _segment_record(customer_id, row)


def segments_between(bind: Bind, first: str, last: str) -> list[SegmentRecord]:
    """The segments of the customers with ids from `first` to `last` that have one."""
    query = _segments().where(
        UserFeatures.customer_id.between(first, last), UserFeatures.segment_id.is_not(None)
    )
    with connect(bind) as conn:
        rows = conn.execute(query).all()
    return [_segment_record(str(row.customer_id), row) for row in rows]


def held_products(bind: Bind, customer_id: str) -> set[str]:
    """The products of the customer's open subscriptions (no end date)."""
    query = select(Subscription.product_id).where(
        Subscription.customer_id == customer_id, Subscription.end_date.is_(None)
    )
    with connect(bind) as conn:
        return {str(p) for p in conn.execute(query).scalars()}


def ids_with_features(bind: Bind) -> list[str]:
    """Every customer id that has a `user_features` row, in id order."""
    query = select(UserFeatures.customer_id).order_by(UserFeatures.customer_id)
    with connect(bind) as conn:
        return [str(c) for c in conn.execute(query).scalars()]
