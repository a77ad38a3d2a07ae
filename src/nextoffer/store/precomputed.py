"""The `precomputed_offers` table: written by precompute, read by the answer chain and warming."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, bindparam, delete, select

from nextoffer.store.reads._sql import Bind, connect
from nextoffer.store.schema import PrecomputedOffers

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class StoredOffers:
    """A customer's precomputed offers as stored (the dicts `Offer.to_dict` wrote)."""

    customer_id: str
    offers: list[dict[str, Any]]
    model_version: str


def _stored(row: Any) -> StoredOffers:
    offers = row.offers if isinstance(row.offers, list) else json.loads(row.offers)
    return StoredOffers(str(row.customer_id), offers, str(row.model_version))


_COLUMNS = (
    PrecomputedOffers.customer_id,
    PrecomputedOffers.offers,
    PrecomputedOffers.model_version,
)


# Built once: the answer chain reads one customer per request.
_ONE = select(*_COLUMNS).where(PrecomputedOffers.customer_id == bindparam("customer_id"))


def for_customer(bind: Bind, customer_id: str) -> StoredOffers | None:
    """The customer's precomputed offers, or None."""
    with connect(bind) as conn:
        row = conn.execute(_ONE, {"customer_id": customer_id}).first()
    return None if row is None else _stored(row)


def page(bind: Bind, after: str, limit: int) -> list[StoredOffers]:
    """Up to `limit` customers' offers with ids after `after`, by id (keyset)."""
    query = (
        select(*_COLUMNS)
        .where(PrecomputedOffers.customer_id > after)
        .order_by(PrecomputedOffers.customer_id)
        .limit(limit)
    )
    with connect(bind) as conn:
        return [_stored(r) for r in conn.execute(query)]


def first_customer(bind: Bind) -> str | None:
    """The lowest customer id with precomputed offers, or None when there are none."""
    query = select(PrecomputedOffers.customer_id).order_by(PrecomputedOffers.customer_id)
    with connect(bind) as conn:
        found = conn.execute(query.limit(1)).scalar()
    return None if found is None else str(found)


def replace_range(engine: Engine, first: str, last: str, frame: pd.DataFrame) -> None:
    """Replace the rows of the ids `first`..`last` with `frame`, in one transaction.

    `frame` has the table's columns: customer_id, offers (JSON text), model_version,
    computed_at.
    """
    from nextoffer.store.bulk import upsert_frame  # pandas and pyarrow: only where written

    with engine.begin() as conn:
        conn.execute(
            delete(PrecomputedOffers).where(PrecomputedOffers.customer_id.between(first, last))
        )
        upsert_frame(
            conn,
            PrecomputedOffers.__table__,  # type: ignore[arg-type]
            frame,
            ("customer_id",),
            on_conflict="fail",
        )


def delete_older(engine: Engine, computed_at: datetime) -> None:
    """Drop rows computed before `computed_at` (customers no run covers any more)."""
    with engine.begin() as conn:
        conn.execute(delete(PrecomputedOffers).where(PrecomputedOffers.computed_at < computed_at))
