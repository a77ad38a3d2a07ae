"""Impact reads: each exposed customer's first exposure in a period and its outcomes after.

A few set-based reads (first exposures, then the acquisitions and churn dates of those
customers after them, the catalogue's margins and the customers' segments) joined with
numpy: one pass however many customers, the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import ColumnElement, Float, Select, Subquery, and_, cast, distinct, func, select

from nextoffer.domain.impact import NO_SEGMENT, TREATED, CustomerOutcomes, ImpactPeriod
from nextoffer.store.reads._sql import Bind, connect
from nextoffer.store.reads.features import frame
from nextoffer.store.reads.outcomes import (
    acquired_offered,
    acquisition_rows,
    churn_rows,
    churned_in_window,
    with_windows,
)
from nextoffer.store.schema import Exposure, Product, Segment, UserFeatures

if TYPE_CHECKING:
    import pandas as pd


def impact_outcomes(bind: Bind, period: ImpactPeriod) -> CustomerOutcomes:
    """Every customer first exposed in `period`, with the outcomes of the window after it.

    The first exposure per customer with `exposed_at` in [exposed_from, exposed_to] and no
    experiment tag (the universal control group's, not an experiment's) sets the arm and
    the offered products (`product_ids`; for the control arm the answer it would have had).
    Over (exposed_at, exposed_at + window]:

    - acquired: a transaction of type activation, purchase or upgrade of an offered
      product, or a subscription to one starting in the window. A subscription has only a
      day: it counts from the day after the exposure's to the window's last day (the same
      day is ambiguous, before or after the exposure, and its transaction has the time);
    - margin: the margin of each offered product acquired (once per product), less its
      offer cost when the customer was treated — control customers were offered nothing;
    - churned: a churn label whose churn date falls in the window, by day as above.

    The segment is the customer's in the latest features (`NO_SEGMENT` when none).
    """
    window = timedelta(days=period.window_days)
    horizon = period.exposed_to + window
    first_at, first_exposures = first_exposure_query(period)
    with connect(bind) as conn:
        exposures = frame(conn, first_exposures)
        bought, subscribed = acquisition_rows(conn, first_at, period.exposed_from, horizon)
        churn = churn_rows(conn, first_at, period.exposed_from, horizon)
        segments = frame(
            conn,
            select(UserFeatures.customer_id, UserFeatures.segment_id).join(
                first_at, UserFeatures.customer_id == first_at.c.customer_id
            ),
        )
        products = frame(
            conn,
            select(
                Product.product_id,
                cast(Product.margin, Float).label("margin"),
                cast(Product.offer_cost, Float).label("offer_cost"),
            ),
        )
    return _outcomes(exposures, bought, subscribed, churn, segments, products, window)


def first_exposure_query(
    period: ImpactPeriod,
) -> tuple[Subquery, Select[str, str, datetime, str, str]]:
    """Each customer's first untagged exposure in `period`: (first_at per customer, rows).

    The rows are customer_id, exposure_id, exposed_at, arm, product_ids; two exposures at
    the same first instant both come back (callers keep the smaller id).
    """
    first_at = (
        select(Exposure.customer_id, func.min(Exposure.exposed_at).label("first_at"))
        .where(*_in_period(period))
        .group_by(Exposure.customer_id)
        .subquery()
    )
    rows = (
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
        .where(_universal())
    )
    return first_at, rows


def pending_customers(bind: Bind, period: ImpactPeriod) -> int:
    """Customers exposed after the period whose window has not closed: not compared yet.

    A customer first exposed inside the period and again later is compared, not pending.
    """
    compared = select(Exposure.customer_id).where(*_in_period(period))
    query = select(func.count(distinct(Exposure.customer_id))).where(
        _universal(),
        Exposure.exposed_at > period.exposed_to,
        Exposure.exposed_at <= period.as_of,
        Exposure.customer_id.not_in(compared),
    )
    with connect(bind) as conn:
        return int(conn.execute(query).scalar_one())


def _universal() -> ColumnElement[bool]:
    # Experiment-tagged exposures measure an experiment's variants, not the universal
    # control group: their `control` arm may well have been shown offers.
    return Exposure.experiment_id.is_(None)


def _in_period(period: ImpactPeriod) -> tuple[ColumnElement[bool], ...]:
    return (
        _universal(),
        Exposure.exposed_at >= period.exposed_from,
        Exposure.exposed_at <= period.exposed_to,
    )


def segment_names(bind: Bind) -> dict[int, str]:
    """{segment id: name} of the latest features run."""
    with connect(bind) as conn:
        rows = conn.execute(select(Segment.segment_id, Segment.name)).all()
    return {int(segment): str(name) for segment, name in rows}


def _outcomes(
    exposures: pd.DataFrame,
    bought: pd.DataFrame,
    subscribed: pd.DataFrame,
    churn: pd.DataFrame,
    segments: pd.DataFrame,
    products: pd.DataFrame,
    window: timedelta,
) -> CustomerOutcomes:
    # Two exposures of one customer at the very same instant: the smaller id, for a
    # deterministic arm.
    first = (
        exposures.sort_values(["customer_id", "exposure_id"])
        .drop_duplicates("customer_id")
        .reset_index(drop=True)
    )
    first = with_windows(first, window)
    acquired = acquired_offered(first, bought, subscribed)
    acquired = acquired.merge(products, on="product_id", how="left").fillna(
        {"margin": 0.0, "offer_cost": 0.0}
    )
    acquired = acquired.merge(first[["customer_id", "arm"]], on="customer_id")
    acquired["net"] = acquired["margin"] - np.where(
        acquired["arm"] == TREATED, acquired["offer_cost"], 0.0
    )
    per_customer = acquired.groupby("customer_id")["net"].agg(["sum", "size"])

    churned = churned_in_window(first, churn)

    segment = dict(zip(segments["customer_id"], segments["segment_id"], strict=True))
    ids = first["customer_id"].astype(str).to_numpy()
    margin = per_customer["sum"].reindex(ids, fill_value=0.0).to_numpy(dtype=float)
    count = per_customer["size"].reindex(ids, fill_value=0).to_numpy(dtype=int)
    return CustomerOutcomes(
        customer_id=ids,
        arm=first["arm"].astype(str).to_numpy(),
        acquired=(count > 0).astype(np.int8),
        margin=margin,
        churned=np.array([c in churned for c in ids], dtype=np.int8),
        segment=np.array([_segment(segment.get(c)) for c in ids], dtype=np.int64),
    )


def _segment(value: Any) -> int:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return NO_SEGMENT
    return int(value)
