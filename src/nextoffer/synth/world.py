"""The synthetic world's calendar, how customer signals move purchases, and the churn model."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import numpy as np

from nextoffer.synth.catalog import Catalog

DEFAULT_END = datetime(2026, 11, 1, tzinfo=UTC)
"""A fixed end instant, so that a seed alone decides the output (never the current date)."""

HISTORY_MONTHS = 24
EVENT_DAYS = 182
LABEL_DAYS = 90
SERVICE_WINDOW_DAYS = 90
FORMAT_VERSION = "1"
DAYS_PER_MONTH = 30.44
MAX_TENURE_DAYS = 3650


@dataclass(frozen=True)
class Effect:
    """How observable customer signals move one product's log purchase hazard.

    age: per step of the standardised age band; urban: region urbanity (0..1); usage:
    log(data GB / 10); voice: log(voice minutes / 200); over: log(data / plan allowance),
    clipped to ±2 (re-evaluated every month, since plans change); new: within the first six
    months; tenure: per year of tenure (up to 8).
    """

    age: float = 0.0
    urban: float = 0.0
    usage: float = 0.0
    voice: float = 0.0
    over: float = 0.0
    new: float = 0.0
    tenure: float = 0.0


CUSTOMER_EFFECTS: dict[str, Effect] = {
    "ADD-DATA-10": Effect(over=1.4, new=0.5),
    "ADD-DATA-50": Effect(over=1.6, usage=0.3, new=0.5),
    "RET-DATA-BOOST": Effect(over=0.8),
    "BUN-DUO": Effect(over=0.6, new=0.3),
    "ADD-GAMING": Effect(age=-0.7, usage=0.5, new=0.5),
    "ADD-MUSIC": Effect(age=-0.5, usage=0.3, new=0.5),
    "ADD-TV": Effect(age=0.2, new=0.5),
    "ADD-TV-SPORT": Effect(new=0.3),
    "ADD-INSURE": Effect(age=0.3, new=0.8),
    "ADD-SECURITY": Effect(age=0.3, new=0.4),
    "ADD-ROAM-EU": Effect(age=-0.2, urban=0.4),
    "ADD-ROAM-WORLD": Effect(urban=0.6, voice=0.3),
    "ADD-INTL": Effect(voice=0.9),
    "ADD-CLOUD": Effect(usage=0.2, new=0.3),
    "ADD-FAMILY": Effect(new=0.3),
    "ADD-KIDS": Effect(new=0.3),
    "DEV-WATCH": Effect(age=-0.4, urban=0.3),
    "DEV-TABLET": Effect(age=0.1),
    "DEV-MESH": Effect(urban=0.3, usage=0.3),
    "DEV-PHONE-BUDGET": Effect(tenure=0.08),
    "DEV-PHONE-MID": Effect(tenure=0.08, age=-0.2),
    "DEV-PHONE-FLAG": Effect(tenure=0.08, urban=0.4, usage=0.2),
    "BB-DSL-50": Effect(urban=-0.8, new=0.3),
    "BB-5G-HOME": Effect(urban=-0.5, usage=0.3, new=0.3),
    "BB-FIB-300": Effect(urban=0.5, new=0.3),
    "BB-FIB-1G": Effect(urban=0.8, usage=0.5, new=0.3),
}

PRICE_PENALTY = 0.9
"""Log-hazard lost per unit of price sensitivity times log(1 + monthly price / 10)."""

PURCHASE_SCALE = 2.3
"""Global multiplier on every purchase hazard (tunes transactions per customer)."""


@dataclass(frozen=True)
class ChurnModel:
    """The true churn model: logit p = sum of these terms (all observable at label_as_of).

    contract / payment: added per category; tenure: times exp(-tenure months / 9);
    price: times log(arpu / segment arpu norm), clipped to [-1, 1.5]; support / complaint:
    per event in the 90 days before label_as_of (each capped at 4); products: per held
    subscription beyond the first (capped at 5); bundle / retention: when one is held;
    noise: times a standard-normal, unobserved, per-customer term.
    """

    intercept: float = -2.85
    contract: tuple[float, ...] = (0.9, 1.75, 0.4, 0.0)
    payment: tuple[float, ...] = (0.0, 0.1, 0.25, 0.45)
    tenure: float = 1.5
    tenure_scale_months: float = 9.0
    price: float = 1.2
    support: float = 0.6
    complaint: float = 0.8
    products: float = -0.3
    bundle: float = -0.6
    retention: float = -0.7
    noise: float = 0.3


CHURN = ChurnModel()


@dataclass(frozen=True)
class Timeline:
    """The world's calendar, in days since 1970-01-01 (UTC)."""

    end: datetime
    end_day: int
    history_start: int
    label_day: int
    events_start: int
    steps: tuple[tuple[int, int], ...]

    @classmethod
    def build(cls, end: datetime | None) -> Timeline:
        """The calendar for a world ending at `end` (floored to midnight UTC)."""
        when = DEFAULT_END if end is None else end
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        when = when.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        end_day = (when - epoch).days
        start_month = np.datetime64(when.date(), "M") - np.timedelta64(HISTORY_MONTHS, "M")
        start = int(start_month.astype("datetime64[D]").astype(np.int64))
        label_day = end_day - LABEL_DAYS
        # Monthly steps; label_as_of is also a boundary, so churn is decided on the state
        # exactly at label_as_of.
        month_starts = np.arange(start_month, start_month + HISTORY_MONTHS + 1)
        bounds = {int(m.astype("datetime64[D]").astype(np.int64)) for m in month_starts}
        bounds = {b for b in bounds if start <= b < end_day} | {start, label_day, end_day}
        edges = sorted(bounds)
        return cls(
            end=when,
            end_day=end_day,
            history_start=start,
            label_day=label_day,
            events_start=end_day - EVENT_DAYS,
            steps=tuple(pairwise(edges)),
        )

    @staticmethod
    def iso_day(day: int) -> str:
        """YYYY-MM-DD of a day number."""
        return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=day)).date().isoformat()


def effect_vectors(catalog: Catalog) -> dict[str, np.ndarray]:
    """Per customer signal, the per-product coefficient vector."""
    names = ("age", "urban", "usage", "voice", "over", "new", "tenure")
    out = {name: np.zeros(catalog.n) for name in names}
    for pid, effect in CUSTOMER_EFFECTS.items():
        for name in names:
            out[name][catalog.index[pid]] = getattr(effect, name)
    return out
