"""Engagement, service and offer-response events for the last six months of the window."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nextoffer.domain.vocabulary import Channel, EventType
from nextoffer.synth.arrays import F64, I64, BoolA, codes
from nextoffer.synth.catalog import Catalog
from nextoffer.synth.market import CHANNELS
from nextoffer.synth.population import Population
from nextoffer.synth.simulate import PURCHASE
from nextoffer.synth.world import DAYS_PER_MONTH, SERVICE_WINDOW_DAYS, Timeline

EVENT_TYPES: tuple[EventType, ...] = tuple(EventType)
WEB_VISIT, APP_LOGIN, SUPPORT_CALL, NETWORK_COMPLAINT = codes(
    EVENT_TYPES,
    EventType.WEB_VISIT,
    EventType.APP_LOGIN,
    EventType.SUPPORT_CALL,
    EventType.NETWORK_COMPLAINT,
)
IMPRESSION, CLICK, ACCEPT, DECLINE = codes(
    EVENT_TYPES,
    EventType.OFFER_IMPRESSION,
    EventType.OFFER_CLICK,
    EventType.OFFER_ACCEPT,
    EventType.OFFER_DECLINE,
)
WEB, APP, CALL_CENTER = codes(CHANNELS, Channel.WEB, Channel.APP, Channel.CALL_CENTER)
DAY = 86400
SESSION_LOW, SESSION_HIGH = 10**15, 10**16

# Monthly rates per unit of the customer's digital / service-issue level.
WEB_RATE = 0.75
APP_RATE = 0.8
SUPPORT_RATE = 0.11
COMPLAINT_RATE = 0.07
IMPRESSION_RATE = 0.3


@dataclass
class EventColumns:
    """Events as parallel arrays; -1 means empty (product, channel, session)."""

    cust: I64
    secs: I64
    kind: I64
    prod: I64
    chan: I64
    session: I64

    @classmethod
    def concat(cls, parts: list[EventColumns]) -> EventColumns:
        """All parts, one after the other."""
        return cls(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("cust", "secs", "kind", "prod", "chan", "session")
            )
        )

    def take(self, keep: BoolA | I64) -> EventColumns:
        """The selected rows."""
        return EventColumns(
            self.cust[keep],
            self.secs[keep],
            self.kind[keep],
            self.prod[keep],
            self.chan[keep],
            self.session[keep],
        )


def _sessions(rng: np.random.Generator, n: int) -> I64:
    return rng.integers(SESSION_LOW, SESSION_HIGH, n, dtype=np.int64)


def _spread(
    rng: np.random.Generator,
    rate: F64,
    first: I64,
    days: I64,
    hours: tuple[int, int],
) -> tuple[I64, I64]:
    """Poisson counts per customer over `days` from day `first`, at times within `hours`."""
    counts = rng.poisson(rate * days / DAYS_PER_MONTH)
    cust = np.repeat(np.arange(len(rate), dtype=np.int64), counts)
    day = first[cust] + np.floor(rng.random(len(cust)) * days[cust]).astype(np.int64)
    tod = rng.integers(hours[0] * 3600, hours[1] * 3600, len(cust))
    return cust, day * DAY + tod


def activity_events(rng: np.random.Generator, pop: Population, tl: Timeline) -> EventColumns:
    """Web, app, support and network-complaint events as if nobody churned (cut later)."""
    first = np.maximum(tl.events_start, pop.signup)
    days = np.maximum(tl.end_day - first, 0)
    web = pop.digital * (1.0 - pop.app_share) * WEB_RATE
    app = pop.digital * pop.app_share * APP_RATE
    parts: list[EventColumns] = []
    specs = (
        (WEB_VISIT, web, (6, 24)),
        (APP_LOGIN, app, (6, 24)),
        (SUPPORT_CALL, pop.service_issues * SUPPORT_RATE, (8, 20)),
        (NETWORK_COMPLAINT, pop.service_issues * COMPLAINT_RATE, (7, 22)),
    )
    for kind, rate, hours in specs:
        cust, secs = _spread(rng, rate, first, days, hours)
        m = len(cust)
        if kind == WEB_VISIT:
            chan = np.full(m, WEB, np.int64)
        elif kind == APP_LOGIN:
            chan = np.full(m, APP, np.int64)
        elif kind == SUPPORT_CALL:
            chan = np.full(m, CALL_CENTER, np.int64)
        else:
            chan = np.where(rng.random(m) < 0.35, APP, CALL_CENTER).astype(np.int64)
        session = np.where((chan == WEB) | (chan == APP), _sessions(rng, m), -1)
        parts.append(
            EventColumns(
                cust, secs, np.full(m, kind, np.int64), np.full(m, -1, np.int64), chan, session
            )
        )
    return EventColumns.concat(parts)


def service_counts(events: EventColumns, n: int, tl: Timeline) -> tuple[I64, I64]:
    """Support calls and network complaints per customer in the 90 days before label_as_of."""
    day = events.secs // DAY
    window = (day >= tl.label_day - SERVICE_WINDOW_DAYS) & (day < tl.label_day)
    support = np.bincount(events.cust[window & (events.kind == SUPPORT_CALL)], minlength=n)
    complaints = np.bincount(events.cust[window & (events.kind == NETWORK_COMPLAINT)], minlength=n)
    return support.astype(np.int64), complaints.astype(np.int64)


def offer_events(
    rng: np.random.Generator,
    pop: Population,
    catalog: Catalog,
    tl: Timeline,
    weights: F64,
    txn: dict[str, I64],
    churn_day: I64,
) -> EventColumns:
    """Offer impressions and responses.

    Digital purchases in the event window come with impression -> click -> accept in one
    session; other impressions show products in proportion to the customer's propensity
    (`weights`, zero where not eligible) and are clicked more often the better they fit.
    """
    parts: list[EventColumns] = []

    bought = (
        (txn["type"] == PURCHASE)
        & ((txn["chan"] == WEB) | (txn["chan"] == APP))
        & (txn["day"] >= tl.events_start)
    )
    cust, prod, chan, secs = (
        txn["cust"][bought],
        txn["prod"][bought],
        txn["chan"][bought],
        txn["secs"][bought],
    )
    m = len(cust)
    session = _sessions(rng, m)
    shown = secs - rng.integers(120, 1800, m)
    clicked = secs - rng.integers(5, 110, m)
    for kind, when in ((IMPRESSION, shown), (CLICK, clicked), (ACCEPT, secs)):
        parts.append(EventColumns(cust, when, np.full(m, kind, np.int64), prod, chan, session))

    first = np.maximum(tl.events_start, pop.signup)
    stop = np.minimum(tl.end_day, churn_day)
    days = np.maximum(stop - first, 0)
    rate = pop.digital * IMPRESSION_RATE
    cust, secs = _spread(rng, rate, first, days, (6, 22))
    m = len(cust)
    chan = np.where(rng.random(m) < pop.app_share[cust], APP, WEB).astype(np.int64)
    w = weights[cust] * catalog.channel_ok[:, chan].T
    total = w.sum(axis=1)
    keep = total > 0
    cust, secs, chan, w, total = cust[keep], secs[keep], chan[keep], w[keep], total[keep]
    m = len(cust)
    cum = np.cumsum(w, axis=1)
    u = rng.random(m) * total
    prod = np.minimum((u[:, None] >= cum).sum(axis=1), catalog.n - 1).astype(np.int64)
    eligible = (w > 0).sum(axis=1)
    # How much better than the customer's average eligible product this one fits.
    fit = np.log(w[np.arange(m), prod] * eligible / total)
    p_click = 1.0 / (1.0 + np.exp(-(-2.0 + 0.6 * fit)))
    session = _sessions(rng, m)
    parts.append(EventColumns(cust, secs, np.full(m, IMPRESSION, np.int64), prod, chan, session))
    u = rng.random((2, m))
    click = u[0] < p_click
    decline = np.where(click, u[1] < 0.4, u[1] < 0.12)
    click_secs = secs + rng.integers(3, 60, m)
    decline_secs = np.where(click, click_secs, secs) + rng.integers(2, 30, m)
    for kind, sel, when in ((CLICK, click, click_secs), (DECLINE, decline, decline_secs)):
        k = int(sel.sum())
        parts.append(
            EventColumns(
                cust[sel], when[sel], np.full(k, kind, np.int64), prod[sel], chan[sel], session[sel]
            )
        )
    return EventColumns.concat(parts)
