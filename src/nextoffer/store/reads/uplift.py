"""Uplift reads: when and with what each customer was first exposed, and the retention offers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from nextoffer.domain.impact import ImpactPeriod
from nextoffer.store.reads._sql import Bind, connect
from nextoffer.store.reads.features import frame
from nextoffer.store.reads.impact import first_exposure_query
from nextoffer.store.schema import Product

if TYPE_CHECKING:
    import pandas as pd


def first_exposures(bind: Bind, period: ImpactPeriod) -> pd.DataFrame:
    """customer_id, exposed_at, arm, product_ids of each customer's first exposure in `period`.

    The same exposures `reads.impact.impact_outcomes` compares: untagged by an experiment,
    first per customer within [exposed_from, exposed_to], the smaller id on a tie.
    """
    _first_at, query = first_exposure_query(period)
    with connect(bind) as conn:
        found = frame(conn, query)
    return (
        found.sort_values(["customer_id", "exposure_id"])
        .drop_duplicates("customer_id")
        .drop(columns="exposure_id")
        .reset_index(drop=True)
    )


def retention_product_ids(bind: Bind) -> set[str]:
    """The ids of the catalogue's retention offers (`products.is_retention_offer`)."""
    with connect(bind) as conn:
        rows = conn.execute(select(Product.product_id).where(Product.is_retention_offer)).all()
    return {str(product_id) for (product_id,) in rows}
