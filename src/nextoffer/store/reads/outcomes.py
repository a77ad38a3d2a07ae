"""Outcomes in a window after an exposure, shared by the impact and experiment reads.

An exposure (or a unit's first exposure) opens a window (exposed_at, exposed_at + window].
Inside it count:

- acquisitions of the exposure's offered products: a transaction of type activation,
  purchase or upgrade, or a subscription starting in the window. A subscription has only a
  day: it counts from the day after the exposure's to the window's last day (the same day
  is ambiguous, before or after the exposure, and its transaction has the time);
- churn: a churn label whose churn date falls in the window, by day as above.

The SQL reads fetch, set-based, every candidate row of the exposed customers (after their
first exposure, up to the last window's end); the exact per-window filter is done with
pandas on those rows, the same way for every caller.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Subquery, select

from nextoffer.domain.exposures import PRODUCT_SEPARATOR
from nextoffer.domain.vocabulary import TransactionType
from nextoffer.store.reads._sql import as_date
from nextoffer.store.reads.features import frame
from nextoffer.store.schema import ChurnLabel, Subscription, Transaction

if TYPE_CHECKING:
    import pandas as pd

ACQUIRING = (TransactionType.ACTIVATION, TransactionType.PURCHASE, TransactionType.UPGRADE)
"""Transaction types that acquire a product."""

CUSTOMER = "customer_id"


def acquisition_rows(
    conn: Connection, first_at: Subquery, since: datetime, horizon: datetime
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Acquisitions that may fall in a window of the customers of `first_at`.

    `first_at` has one row per customer: `customer_id` and `first_at`, the earliest
    exposure. Returns the transactions (customer_id, product_id, at) of an acquiring type
    after the customer's `first_at` and up to `horizon`, and the subscriptions
    (customer_id, product_id, start_date) starting after the day of `since` (the earliest
    exposure of all) up to the day of `horizon`.
    """
    bought = frame(
        conn,
        select(Transaction.customer_id, Transaction.product_id, Transaction.ts.label("at"))
        .join(first_at, Transaction.customer_id == first_at.c.customer_id)
        .where(
            Transaction.ts > first_at.c.first_at,
            Transaction.ts <= horizon,
            Transaction.type.in_([t.value for t in ACQUIRING]),
        ),
    )
    subscribed = frame(
        conn,
        select(Subscription.customer_id, Subscription.product_id, Subscription.start_date)
        .join(first_at, Subscription.customer_id == first_at.c.customer_id)
        .where(
            Subscription.start_date > since.date(),
            Subscription.start_date <= horizon.date(),
        ),
    )
    return bought, subscribed


def churn_rows(
    conn: Connection, first_at: Subquery, since: datetime, horizon: datetime
) -> pd.DataFrame:
    """Churn dates of the customers of `first_at` that may fall in a window.

    (customer_id, churn_date) pairs, each once, with the date after the day of `since` and
    up to the day of `horizon`.
    """
    return frame(
        conn,
        select(ChurnLabel.customer_id, ChurnLabel.churn_date)
        .distinct()
        .join(first_at, ChurnLabel.customer_id == first_at.c.customer_id)
        .where(
            ChurnLabel.churn_date.is_not(None),
            ChurnLabel.churn_date > since.date(),
            ChurnLabel.churn_date <= horizon.date(),
        ),
    )


def with_windows(exposures: pd.DataFrame, window: timedelta) -> pd.DataFrame:
    """`exposures` (with `exposed_at`) plus each window: `ends_at`, `day` and `last_day`.

    `exposed_at` becomes an aware UTC timestamp; the days are the UTC days of the
    exposure and of the window's end.
    """
    import pandas as pd

    out = exposures.copy()
    out["exposed_at"] = pd.to_datetime(out["exposed_at"], utc=True)
    out["ends_at"] = out["exposed_at"] + window
    out["day"] = out["exposed_at"].dt.date
    out["last_day"] = out["ends_at"].dt.date
    return out


def offered_products(exposures: pd.DataFrame, key: str = CUSTOMER) -> pd.DataFrame:
    """One row (key, product_id) per product named in each exposure's `product_ids`."""
    offered = (
        exposures[[key, "product_ids"]]
        .assign(product_id=exposures["product_ids"].fillna("").str.split(PRODUCT_SEPARATOR))
        .explode("product_id")
        .drop(columns="product_ids")
    )
    return offered[offered["product_id"].astype(str).str.len() > 0]


def acquired_offered(
    windows: pd.DataFrame,
    bought: pd.DataFrame,
    subscribed: pd.DataFrame,
    key: str = CUSTOMER,
) -> pd.DataFrame:
    """The offered products acquired in each window: one row (key, product_id) per pair.

    `windows` is `with_windows` of one exposure per `key` (with `customer_id` and
    `product_ids`); `bought` and `subscribed` are `acquisition_rows`.
    """
    import pandas as pd

    columns = [key] if key == CUSTOMER else [key, CUSTOMER]
    timed = bought.merge(windows[[*columns, "exposed_at", "ends_at"]], on=CUSTOMER)
    timed["at"] = pd.to_datetime(timed["at"], utc=True)
    timed = timed[(timed["at"] > timed["exposed_at"]) & (timed["at"] <= timed["ends_at"])]
    dated = subscribed.merge(windows[[*columns, "day", "last_day"]], on=CUSTOMER)
    starts = days(dated["start_date"])
    dated = dated[(starts > dated["day"]) & (starts <= dated["last_day"])]
    acquired = pd.concat([timed[[key, "product_id"]], dated[[key, "product_id"]]])
    # Only the products the exposure offered count, each once per key.
    offered = offered_products(windows, key)
    return acquired.drop_duplicates().merge(offered, on=[key, "product_id"]).drop_duplicates()


def churned_in_window(windows: pd.DataFrame, churn: pd.DataFrame, key: str = CUSTOMER) -> set[str]:
    """The keys of `windows` whose customer has a churn date (`churn_rows`) in the window."""
    columns = [key] if key == CUSTOMER else [key, CUSTOMER]
    left = churn.merge(windows[[*columns, "day", "last_day"]], on=CUSTOMER)
    churn_days = days(left["churn_date"])
    inside = (churn_days > left["day"]) & (churn_days <= left["last_day"])
    return {str(k) for k in left.loc[inside, key]}


def days(values: pd.Series) -> pd.Series:
    """Dates as `date` objects: SQLite hands them back as text, PostgreSQL as dates."""
    import pandas as pd

    return pd.Series([as_date(v) for v in values], index=values.index, dtype=object)
