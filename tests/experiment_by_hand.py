"""An experiment's per-customer numbers computed by hand from the raw rows, with plain Python.

The tests from served answers to the API and the console compare the product's results with
these: the units are the customers with an exposure tagged with the experiment (the first
one sets the variant and the offered products); conversions are a tagged accept, or an
acquisition of an offered product in the window after the first exposure; impressions and
clicks are the customer's tagged events; churn and complaints fall in the window.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
from sqlalchemy import Engine, select

from nextoffer.domain.experiment_stats import UnitOutcomes
from nextoffer.store.schema import ChurnLabel, Event, Exposure, Transaction

ACQUIRING = ("activation", "purchase", "upgrade")


@dataclass
class ByHand:
    """Per customer of a customer-randomised experiment: variant and outcomes."""

    variant: dict[str, str]
    converted: dict[str, int]
    impressions: dict[str, int]
    clicks: dict[str, int]
    churned: dict[str, int]
    complaints: dict[str, int]

    def units(self, variant: str) -> int:
        """Customers of `variant`."""
        return sum(1 for v in self.variant.values() if v == variant)

    def total(self, column: dict[str, int], variant: str) -> int:
        """The sum of `column` over the customers of `variant`."""
        return sum(n for c, n in column.items() if self.variant[c] == variant)

    def rate(self, column: dict[str, int], variant: str) -> float:
        """The per-unit mean of `column` over the customers of `variant`."""
        return self.total(column, variant) / self.units(variant)

    def outcomes(self, *, ctr: bool) -> UnitOutcomes:
        """The per-unit arrays, to run the same statistics on by hand."""
        ids = sorted(self.variant)

        def column(values: dict[str, int]) -> np.ndarray:
            return np.array([values[c] for c in ids], dtype=float)

        return UnitOutcomes(
            variant=np.array([self.variant[c] for c in ids]),
            converted=column(self.converted),
            clicks=column(self.clicks) if ctr else None,
            impressions=column(self.impressions) if ctr else None,
            churned=column(self.churned),
            complaints=column(self.complaints),
        )


def _rows(engine: Engine, table: Any, customers: list[str]) -> dict[str, list[Any]]:
    """The table's rows of `customers`, by customer."""
    found: dict[str, list[Any]] = defaultdict(list)
    with engine.connect() as conn:
        for start in range(0, len(customers), 500):
            chunk = customers[start : start + 500]
            for row in conn.execute(select(table).where(table.c.customer_id.in_(chunk))):
                found[row.customer_id].append(row)
    return found


def by_hand(engine: Engine, experiment_id: str, window_days: int) -> ByHand:
    """Each exposed customer's numbers, from the raw rows."""
    with engine.connect() as conn:
        exposures = conn.execute(
            select(Exposure.__table__).where(Exposure.experiment_id == experiment_id)
        ).all()
    first: dict[str, Any] = {}
    for row in exposures:
        if row.customer_id not in first or row.exposed_at < first[row.customer_id].exposed_at:
            first[row.customer_id] = row
    customers = sorted(first)
    events = _rows(engine, Event.__table__, customers)
    bought = _rows(engine, Transaction.__table__, customers)
    labels = _rows(engine, ChurnLabel.__table__, customers)
    window = timedelta(days=window_days)
    hand = ByHand({}, {}, {}, {}, {}, {})
    for customer, row in first.items():
        start, end = row.exposed_at, row.exposed_at + window
        offered = set(row.product_ids.split("|"))
        tagged = [e for e in events[customer] if e.experiment_id == experiment_id]
        accepted = any(e.event_type == "offer_accept" for e in tagged)
        acquired = any(
            t.product_id in offered and t.type in ACQUIRING and start < t.ts <= end
            for t in bought[customer]
        )
        hand.variant[customer] = row.variant
        hand.converted[customer] = int(accepted or acquired)
        hand.impressions[customer] = sum(e.event_type == "offer_impression" for e in tagged)
        hand.clicks[customer] = sum(e.event_type == "offer_click" for e in tagged)
        hand.complaints[customer] = sum(
            e.event_type == "network_complaint" and start < e.ts <= end for e in events[customer]
        )
        hand.churned[customer] = int(
            any(
                label.churn_date is not None and start.date() < label.churn_date <= end.date()
                for label in labels[customer]
            )
        )
    return hand
