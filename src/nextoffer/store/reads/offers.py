"""Offer responses over time: impressions, clicks, accepts and declines from `events`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, select

from nextoffer.domain.vocabulary import EventType
from nextoffer.store.reads._sql import Bind, as_date, connect, rate, utc_day
from nextoffer.store.schema import Event

OFFER_EVENTS = (
    EventType.OFFER_IMPRESSION.value,
    EventType.OFFER_CLICK.value,
    EventType.OFFER_ACCEPT.value,
    EventType.OFFER_DECLINE.value,
)


@dataclass(frozen=True)
class Responses:
    """Offer events counted over some time, and the rates they give.

    The counts are in the order of `OFFER_EVENTS`, one per event type.
    """

    impressions: int
    clicks: int
    accepts: int
    declines: int

    @property
    def ctr(self) -> float | None:
        """Clicks per impression, None without impressions."""
        return rate(self.clicks, self.impressions)

    @property
    def acceptance(self) -> float | None:
        """Accepts per impression (the overview's acceptance rate), None without impressions."""
        return rate(self.accepts, self.impressions)


@dataclass(frozen=True)
class DayRates(Responses):
    """Offer events of one UTC day and the rates they give."""

    day: date


@dataclass(frozen=True)
class OfferRates(Responses):
    """Offer events since `since`, in total and per day (every day present, zeros included)."""

    since: datetime
    days: list[DayRates]


def offer_event_counts(bind: Bind, since: datetime) -> dict[str, int]:
    """Offer events since `since` by event type (a range scan on `ix_events_type_ts`)."""
    query = (
        select(Event.event_type, func.count())
        .where(Event.event_type.in_(OFFER_EVENTS), Event.ts >= since)
        .group_by(Event.event_type)
    )
    with connect(bind) as conn:
        found = {str(kind): int(n) for kind, n in conn.execute(query)}
    return {kind: found.get(kind, 0) for kind in OFFER_EVENTS}


def offer_rates(bind: Bind, now: datetime, days: int = 30) -> OfferRates:
    """Impressions, clicks, accepts and declines since `now - days`, live from `events`.

    One grouped range scan per event type on `ix_events_type_ts (event_type, ts)`: no cache
    and no batch job in between, so an accept shows in the rate on the next page load.
    """
    since = now - timedelta(days=days)
    counts: dict[date, dict[str, int]] = {}
    with connect(bind) as conn:
        day = utc_day(Event.ts, conn.dialect.name).label("day")
        query = (
            select(day, Event.event_type, func.count().label("n"))
            .where(Event.event_type.in_(OFFER_EVENTS), Event.ts >= since)
            .group_by(day, Event.event_type)
        )
        for row in conn.execute(query):
            counts.setdefault(as_date(row.day), {})[row.event_type] = int(row.n)
    first = since.astimezone(UTC).date()
    last = now.astimezone(UTC).date()
    series = []
    total: Counter[str] = Counter()
    for offset in range((last - first).days + 1):
        current = first + timedelta(days=offset)
        found = counts.get(current, {})
        series.append(DayRates(*_in_order(found), day=current))
        total.update(found)
    return OfferRates(*_in_order(total), since=since, days=series)


def _in_order(counts: Mapping[str, int]) -> tuple[int, int, int, int]:
    """The counts of the four `OFFER_EVENTS` types, in that order (0 for a missing one)."""
    impressions, clicks, accepts, declines = (counts.get(kind, 0) for kind in OFFER_EVENTS)
    return impressions, clicks, accepts, declines
