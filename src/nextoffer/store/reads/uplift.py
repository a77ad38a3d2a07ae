"""Uplift reads: when and with what each customer was first exposed, and the retention offers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import and_, func, select

from nextoffer.domain.impact import ImpactPeriod
from nextoffer.store.reads._sql import Bind, connect
from nextoffer.store.reads.features import frame
from nextoffer.store.schema import Exposure, Product

if TYPE_CHECKING:
    import pandas as pd


def first_exposures(bind: Bind, period: ImpactPeriod) -> pd.DataFrame:
    """customer_id, exposed_at, arm, product_ids of each customer's first exposure in `period`.

    The same exposures `reads.impact.impact_outcomes` compares: untagged by an experiment,
    first per customer within [exposed_from, exposed_to], the smaller id on a tie.
    """
    universal = Exposure.experiment_id.is_(None)
    in_period = (
        universal,
        Exposure.exposed_at >= period.exposed_from,
        Exposure.exposed_at <= period.exposed_to,
    )
    first_at = (
        select(Exposure.customer_id, func.min(Exposure.exposed_at).label("first_at"))
        .where(*in_period)
        .group_by(Exposure.customer_id)
        .subquery()
    )
    query = (
        select(
            Exposure.customer_id,
            Exposure.exposure_id,
            Exposure.exposed_at,
            Exposure.arm,
            Exposure.product_ids,
        )
        .join(
            first_at,
            and_(
                Exposure.customer_id == first_at.c.customer_id,
                Exposure.exposed_at == first_at.c.first_at,
            ),
        )
        .where(universal)
    )
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
