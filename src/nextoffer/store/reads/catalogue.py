"""Catalogue reads: products in the API's shape, categories, uptake, existence."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, or_, select

from nextoffer.store.reads._sql import Bind, connect
from nextoffer.store.schema import Product, Subscription, Transaction, UserFeatures


@dataclass(frozen=True)
class ProductView:
    """A catalogue entry with its eligibility rules."""

    product_id: str
    name: str
    category: str
    price: float
    margin: float
    upfront_price: float
    contract_types: list[str]
    min_tenure_months: int
    regions: list[str]
    channels: list[str]
    requires_category: str | None
    is_retention_offer: bool
    active: bool


def product_view(p: Any) -> ProductView:
    """A catalogue row (a `Product` or a result row of its columns) in the API's shape."""

    def split(text: str | None) -> list[str]:
        return [s for s in (text or "").split("|") if s]

    return ProductView(
        product_id=p.product_id,
        name=p.name,
        category=p.category,
        price=float(p.price),
        margin=float(p.margin),
        upfront_price=float(p.upfront_price or 0),
        contract_types=split(p.contract_types),
        min_tenure_months=int(p.min_tenure_months or 0),
        regions=split(p.regions),
        channels=split(p.channels),
        requires_category=p.requires_category,
        is_retention_offer=bool(p.is_retention_offer),
        active=bool(p.active),
    )


def product(bind: Bind, product_id: str) -> ProductView | None:
    """One catalogue entry in the API's shape, or None."""
    with connect(bind) as conn:
        row = conn.execute(select(Product).where(Product.product_id == product_id)).first()
    return None if row is None else product_view(row)


def product_exists(bind: Bind, product_id: str) -> bool:
    """True when the id is a catalogue entry's (a primary-key lookup)."""
    with connect(bind) as conn:
        found = conn.execute(select(Product.product_id).where(Product.product_id == product_id))
        return found.first() is not None


def list_products(
    bind: Bind,
    *,
    category: str | None = None,
    active: bool | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[int, list[ProductView]]:
    """(total matching, one page of products) ordered by product id."""
    query = select(Product)
    count = select(func.count()).select_from(Product)
    for column, value in ((Product.category, category), (Product.active, active)):
        if value is not None:
            query = query.where(column == value)
            count = count.where(column == value)
    with connect(bind) as conn:
        total = int(conn.execute(count).scalar_one())
        rows = conn.execute(query.order_by(Product.product_id).limit(limit).offset(offset))
        return total, [product_view(r) for r in rows]


def product_uptake(bind: Bind, product_ids: Sequence[str], today: date) -> dict[str, int]:
    """Customers holding each product today, for one page of products.

    Counted per listed product on `ix_subscriptions_product_end (product_id, end_date)`
    (migration 0004), never over the whole subscriptions table.
    """
    if not product_ids:
        return {}
    query = (
        select(Subscription.product_id, func.count())
        .where(
            Subscription.product_id.in_(list(product_ids)),
            or_(Subscription.end_date.is_(None), Subscription.end_date > today),
        )
        .group_by(Subscription.product_id)
    )
    with connect(bind) as conn:
        found = {str(p): int(n) for p, n in conn.execute(query)}
    return {p: found.get(p, 0) for p in product_ids}


def product_categories(bind: Bind) -> list[str]:
    """The categories in the catalogue (a small table)."""
    with connect(bind) as conn:
        return sorted(str(c) for c in conn.execute(select(Product.category).distinct()).scalars())


def acquisitions_by_segment(
    bind: Bind, types: Sequence[str], window: timedelta
) -> list[tuple[int | None, str, int]]:
    """(segment, product, count) of transactions of `types` in the last `window` of data.

    The window ends at the newest transaction, not now, so an old extract still counts.
    Customers without features have segment None. Empty when there are no transactions.
    """
    with connect(bind) as conn:
        newest = conn.execute(select(func.max(Transaction.ts))).scalar()
        if newest is None:
            return []
        rows = conn.execute(
            select(UserFeatures.segment_id, Transaction.product_id, func.count())
            .join(UserFeatures, UserFeatures.customer_id == Transaction.customer_id, isouter=True)
            .where(Transaction.ts >= newest - window, Transaction.type.in_(list(types)))
            .group_by(UserFeatures.segment_id, Transaction.product_id)
        ).all()
    return [(segment, str(product), int(n)) for segment, product, n in rows]
