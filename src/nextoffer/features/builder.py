"""Point-in-time customer features computed with SQL aggregates and pandas, never row by row."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Executable, Float, and_, case, cast, func, or_, select
from sqlalchemy.sql import ColumnElement

from nextoffer.domain.vocabulary import (
    ENGAGEMENT_EVENTS,
    SERVICE_ISSUE_EVENTS,
    EventType,
    ProductCategory,
)
from nextoffer.store.schema import Customer, Event, Product, Subscription, Transaction

DAYS_PER_MONTH = 365.25 / 12
HOLDING_COLUMNS = {
    ProductCategory.MOBILE_PLAN: "mobile_held",
    ProductCategory.BROADBAND_PLAN: "broadband_held",
    ProductCategory.ADDON: "addons_held",
    ProductCategory.DEVICE: "devices_held",
    ProductCategory.BUNDLE: "bundles_held",
}
COUNT_COLUMNS = [
    "frequency_90d",
    "products_held",
    *HOLDING_COLUMNS.values(),
    "support_contacts_90d",
    "engagement_30d",
    "offers_accepted_180d",
]
FEATURE_COLUMNS = [
    "customer_id",
    "tenure_months",
    "contract_type",
    "payment_method",
    "region",
    "age_band",
    "plan_id",
    "arpu",
    "data_gb_month",
    "voice_min_month",
    "recency_days",
    "frequency_90d",
    "monetary_90d",
    "monetary_total",
    *COUNT_COLUMNS[1:],
]


# The customer attributes models use, by type: every feature column but the id.
MODEL_FEATURES = tuple(c for c in FEATURE_COLUMNS if c != "customer_id")
CATEGORICAL_FEATURES = ("contract_type", "payment_method", "region", "age_band", "plan_id")
NUMERIC_FEATURES = tuple(c for c in MODEL_FEATURES if c not in CATEGORICAL_FEATURES)


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.sum(case((condition, 1), else_=0))


def _frame(conn: Connection, query: Executable) -> pd.DataFrame:
    result = conn.execute(query)
    # Plain tuples: pandas probes SQLAlchemy Row objects key by key, ten times slower.
    return pd.DataFrame([tuple(row) for row in result], columns=list(result.keys()))


def data_as_of(conn: Connection, now: datetime) -> datetime:
    """The data's own clock: midnight after the newest transaction or event, capped at `now`.

    Features are measured at this instant by default, so a data set exported last week
    gives the same features today as it did then.
    """
    newest = [
        conn.execute(select(func.max(Transaction.ts))).scalar(),
        conn.execute(select(func.max(Event.ts))).scalar(),
    ]
    stamps = [
        pd.Timestamp(t, tz="UTC") if pd.Timestamp(t).tzinfo is None else pd.Timestamp(t)
        for t in newest
        if t is not None
    ]
    if not stamps:
        return now
    end_of_day = (max(stamps).floor("D") + pd.Timedelta(days=1)).to_pydatetime()
    return min(end_of_day, now)


def build_features(conn: Connection, as_of: datetime) -> pd.DataFrame:
    """One row per customer who had signed up by `as_of`, using only data before `as_of`."""
    day = as_of.date()
    t30, t90, t180 = (as_of - timedelta(days=d) for d in (30, 90, 180))
    customers = _frame(
        conn,
        select(
            Customer.customer_id,
            Customer.signup_date,
            Customer.contract_type,
            Customer.payment_method,
            Customer.region,
            Customer.age_band,
            Customer.plan_id,
            cast(Customer.arpu, Float).label("arpu"),
            Customer.data_gb_month,
            Customer.voice_min_month,
        ).where(Customer.signup_date <= day),
    )
    spend = _frame(
        conn,
        select(
            Transaction.customer_id,
            func.max(Transaction.ts).label("last_ts"),
            _count_if(Transaction.ts >= t90).label("frequency_90d"),
            cast(func.sum(case((Transaction.ts >= t90, Transaction.amount), else_=0)), Float).label(
                "monetary_90d"
            ),
            cast(func.sum(Transaction.amount), Float).label("monetary_total"),
        )
        .where(Transaction.ts < as_of)
        .group_by(Transaction.customer_id),
    )
    holdings = _frame(
        conn,
        select(
            Subscription.customer_id,
            func.count().label("products_held"),
            *(
                _count_if(Product.category == category.value).label(column)
                for category, column in HOLDING_COLUMNS.items()
            ),
        )
        .join(Product, Product.product_id == Subscription.product_id)
        .where(
            Subscription.start_date <= day,
            or_(Subscription.end_date.is_(None), Subscription.end_date >= day),
        )
        .group_by(Subscription.customer_id),
    )
    activity = _frame(
        conn,
        select(
            Event.customer_id,
            _count_if(
                and_(Event.ts >= t90, Event.event_type.in_([e.value for e in SERVICE_ISSUE_EVENTS]))
            ).label("support_contacts_90d"),
            _count_if(
                and_(Event.ts >= t30, Event.event_type.in_([e.value for e in ENGAGEMENT_EVENTS]))
            ).label("engagement_30d"),
            _count_if(Event.event_type == EventType.OFFER_ACCEPT.value).label(
                "offers_accepted_180d"
            ),
        )
        .where(Event.ts < as_of, Event.ts >= t180)
        .group_by(Event.customer_id),
    )
    features = customers.merge(spend, on="customer_id", how="left")
    features = features.merge(holdings, on="customer_id", how="left")
    features = features.merge(activity, on="customer_id", how="left")
    return _finish(features, as_of)


def _finish(features: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    stamp = pd.Timestamp(as_of)
    signup = pd.to_datetime(features["signup_date"]).dt.tz_localize("UTC")
    features["tenure_months"] = (
        (stamp - signup).dt.total_seconds() / 86400 / DAYS_PER_MONTH
    ).round(3)
    last = pd.to_datetime(features["last_ts"], utc=True, format="mixed")
    features["recency_days"] = ((stamp - last).dt.total_seconds() / 86400).round(3)
    for column in COUNT_COLUMNS:
        features[column] = features[column].fillna(0).astype(np.int64)
    for column in ("monetary_90d", "monetary_total"):
        features[column] = features[column].fillna(0.0).astype(float).round(2)
    for column in ("data_gb_month", "voice_min_month"):
        features[column] = features[column].astype(float).fillna(0.0)
    features["arpu"] = features["arpu"].astype(float)
    return features[FEATURE_COLUMNS].sort_values("customer_id", ignore_index=True)
