"""Size reads for KPIs and the overview: customers, catalogue, subscriptions held now."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, func, select

from nextoffer.store.reads._sql import Bind, connect
from nextoffer.store.schema import Customer, Product, Subscription


@dataclass(frozen=True)
class Totals:
    """How big the world is: customers and catalogue."""

    customers: int
    products: int
    active_products: int


def customer_count(bind: Bind) -> int:
    """How many customers there are (a primary-key count)."""
    with connect(bind) as conn:
        return int(conn.execute(select(func.count()).select_from(Customer)).scalar_one())


def totals(bind: Bind) -> Totals:
    """Customers (primary-key count) and products, active and all (a small table)."""
    with connect(bind) as conn:
        customers = customer_count(conn)
        products, active = conn.execute(
            select(func.count(), func.count(case((Product.active.is_(True), 1))))
        ).one()
    return Totals(int(customers), int(products), int(active))


def open_subscriptions(bind: Bind) -> int:
    """Subscriptions with no end date: what customers hold now."""
    with connect(bind) as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(Subscription)
                .where(Subscription.end_date.is_(None))
            ).scalar_one()
        )
