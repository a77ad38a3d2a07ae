"""A fingerprint of the data a model is trained on: catalogue, row counts, time range."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import func, select

from nextoffer.store.reads._sql import Bind, connect
from nextoffer.store.schema import Customer, Product, Subscription, Transaction


def data_fingerprint(bind: Bind) -> dict[str, Any]:
    """What the tables hold now, in a form two trainings' data can be compared by.

    `catalogue` hashes every product's id, category and active flag (a new, removed or
    re-categorised product changes it); counts and the transactions' time range say how
    much data there was and of when.
    """
    with connect(bind) as conn:
        products = conn.execute(
            select(Product.product_id, Product.category, Product.active).order_by(
                Product.product_id
            )
        ).all()
        digest = hashlib.sha256(
            "\n".join(f"{p}|{c}|{bool(a)}" for p, c, a in products).encode()
        ).hexdigest()[:16]
        first, last, transactions = conn.execute(
            select(func.min(Transaction.ts), func.max(Transaction.ts), func.count())
        ).one()
        return {
            "catalogue": digest,
            "products": len(products),
            "customers": int(
                conn.execute(select(func.count()).select_from(Customer)).scalar() or 0
            ),
            "subscriptions": int(
                conn.execute(select(func.count()).select_from(Subscription)).scalar() or 0
            ),
            "transactions": int(transactions or 0),
            "transactions_from": first.isoformat() if first is not None else None,
            "transactions_to": last.isoformat() if last is not None else None,
        }
