"""Hand-made experiment worlds: products, customers, outcome rows, exposures via the recorder."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert

from nextoffer.domain.exposures import Arm, new_exposure
from nextoffer.serving.exposures import ExposureRecorder
from nextoffer.store.schema import ChurnLabel, Customer, Event, Product, Subscription, Transaction

PRODUCTS = ("P1", "P2", "P3", "P4", "P5", "P6")


def add_products(engine: Engine, products: Sequence[str] = PRODUCTS) -> None:
    """Add-ons with a price and a margin, allowed everywhere."""
    with engine.begin() as conn:
        conn.execute(
            insert(Product),
            [
                {
                    "product_id": p,
                    "name": f"Product {p}",
                    "category": "addon",
                    "price": Decimal(10),
                    "margin": Decimal(5),
                }
                for p in products
            ],
        )


def add_customers(engine: Engine, customers: Iterable[str]) -> None:
    """Customers with filler master data."""
    rows = [
        {
            "customer_id": c,
            "age_band": "25-34",
            "region": "north",
            "signup_date": date(2024, 1, 1),
            "contract_type": "one_year",
            "payment_method": "direct_debit",
        }
        for c in customers
    ]
    with engine.begin() as conn:
        for start in range(0, len(rows), 1000):
            conn.execute(insert(Customer), rows[start : start + 1000])


@dataclass
class Rows:
    """Outcome rows to insert in one go: events, transactions, subscriptions, churn labels."""

    events: list[dict[str, Any]]
    transactions: list[dict[str, Any]]
    subscriptions: list[dict[str, Any]]
    churn: list[dict[str, Any]]
    prefix: str
    """Starts every id, so that several batches never collide."""

    @classmethod
    def empty(cls) -> Rows:
        """No rows yet."""
        return cls([], [], [], [], uuid.uuid4().hex[:8])

    def event(
        self,
        customer: str,
        kind: str,
        at: datetime,
        *,
        product: str | None = "P1",
        experiment: str | None = None,
        variant: str | None = None,
        session: str | None = None,
    ) -> None:
        """An event, tagged with an experiment's variant as the server would tag it."""
        self.events.append(
            {
                "event_id": f"{self.prefix}-ev-{len(self.events)}",
                "customer_id": customer,
                "ts": at,
                "event_type": kind,
                "product_id": product,
                "channel": "app",
                "session_id": session,
                "experiment_id": experiment,
                "variant": variant,
            }
        )

    def bought(self, customer: str, product: str, at: datetime, kind: str = "purchase") -> None:
        """A transaction."""
        self.transactions.append(
            {
                "transaction_id": f"{self.prefix}-tx-{len(self.transactions)}",
                "customer_id": customer,
                "product_id": product,
                "ts": at,
                "type": kind,
                "amount": Decimal(10),
            }
        )

    def subscribed(self, customer: str, product: str, start: date) -> None:
        """A subscription starting on `start`."""
        self.subscriptions.append(
            {
                "subscription_id": f"{self.prefix}-sub-{len(self.subscriptions)}",
                "customer_id": customer,
                "product_id": product,
                "start_date": start,
            }
        )

    def churned(self, customer: str, on: date, as_of: date = date(2026, 1, 1)) -> None:
        """A churn label with its churn date."""
        self.churn.append(
            {"customer_id": customer, "as_of": as_of, "churned": True, "churn_date": on}
        )

    def write(self, engine: Engine) -> None:
        """Insert everything, in batches."""
        with engine.begin() as conn:
            for table, rows in (
                (Event, self.events),
                (Transaction, self.transactions),
                (Subscription, self.subscriptions),
                (ChurnLabel, self.churn),
            ):
                for start in range(0, len(rows), 1000):
                    conn.execute(insert(table), rows[start : start + 1000])


@dataclass(frozen=True)
class Served:
    """One exposure to record: who, when, which variant, what was (or would have been) shown."""

    customer: str
    at: datetime
    variant: str
    products: tuple[str, ...]
    control: bool = False
    session: str | None = None


def record_exposures(
    engine: Engine, tmp: Path, experiment_id: str, served: Iterable[Served]
) -> int:
    """Write exposures through the serving side's recorder (buffer, then one flush)."""
    recorder = ExposureRecorder(engine, tmp / "exposure-spool", share=0.0)
    queued = recorder.record_many(
        new_exposure(
            s.customer,
            s.at,
            Arm.CONTROL if s.control else Arm.TREATED,
            s.products,
            unit_id=s.session,
            experiment_id=experiment_id,
            variant=s.variant,
            channel="app",
        )
        for s in served
    )
    result = recorder.flush()
    assert result.stored == queued and result.spooled == 0
    return result.stored


def at(text: str) -> datetime:
    """A UTC time from 'MM-DD HH:MM' in 2026."""
    return datetime.fromisoformat(f"2026-{text}").replace(tzinfo=UTC)


def day(text: str) -> date:
    """A date from 'MM-DD' in 2026."""
    return date.fromisoformat(f"2026-{text}")
