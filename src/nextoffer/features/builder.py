"""Point-in-time customer features computed with SQL aggregates and pandas, never row by row."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from nextoffer.features.columns import (
    CATEGORICAL_FEATURES,
    COUNT_COLUMNS,
    FEATURE_COLUMNS,
    HOLDING_COLUMNS,
    MODEL_FEATURES,
    NUMERIC_FEATURES,
)
from nextoffer.store import Connection
from nextoffer.store.reads.features import feature_sources, newest_activity

__all__ = [
    "CATEGORICAL_FEATURES",
    "COUNT_COLUMNS",
    "DAYS_PER_MONTH",
    "FEATURE_COLUMNS",
    "HOLDING_COLUMNS",
    "MODEL_FEATURES",
    "NUMERIC_FEATURES",
    "build_features",
    "data_as_of",
]

DAYS_PER_MONTH = 365.25 / 12


def data_as_of(conn: Connection, now: datetime) -> datetime:
    """The data's own clock: midnight after the newest transaction or event, capped at `now`.

    Features are measured at this instant by default, so a data set exported last week
    gives the same features today as it did then.
    """
    stamps = [pd.Timestamp(t) for t in newest_activity(conn)]
    if not stamps:
        return now
    end_of_day = (max(stamps).floor("D") + pd.Timedelta(days=1)).to_pydatetime()
    return min(end_of_day, now)


def build_features(conn: Connection, as_of: datetime) -> pd.DataFrame:
    """One row per customer who had signed up by `as_of`, using only data before `as_of`."""
    sources = feature_sources(
        conn, as_of, {category.value: column for category, column in HOLDING_COLUMNS.items()}
    )
    features = sources.customers.merge(sources.spend, on="customer_id", how="left")
    features = features.merge(sources.holdings, on="customer_id", how="left")
    features = features.merge(sources.activity, on="customer_id", how="left")
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
