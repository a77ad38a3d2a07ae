"""A mapping applied to a block: values mapped, defaults and dates filled, holdings and labels.

One output row per input row for the file's own entity, so quarantined rows keep the line
numbers of the operator's file; subscriptions and churn labels made from a row carry that
row's position. A value with no mapping passes through unchanged, so validation rejects
it with the usual reason naming the value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from nextoffer.domain.attributes import snake_case
from nextoffer.ingest.attributes import TRUE_TEXT
from nextoffer.ingest.entities import CHURN_LABELS, SUBSCRIPTIONS, Entity
from nextoffer.ingest.mapping import DATE, FileMapping, HoldingColumn

DAYS_PER_MONTH = 365.25 / 12


@dataclass(frozen=True)
class Derived:
    """Rows of another entity made from a block: text columns, and the row each came from."""

    entity: Entity
    frame: pd.DataFrame
    origin: np.ndarray


@dataclass(frozen=True)
class Reshaped:
    """A block after its mapping: the file's own rows, and rows derived for other entities."""

    frame: pd.DataFrame
    derived: tuple[Derived, ...]


def reshape(mapping: FileMapping, frame: pd.DataFrame) -> Reshaped:
    """Apply `mapping` to a block of text columns (named as after the mapping's renames)."""
    frame = frame.copy()
    for column, table in mapping.values.items():
        if column in frame.columns:
            frame[column] = map_values(frame[column], table)
    for column, rule in mapping.derive.items():
        empty = frame[column] == ""
        if empty.any():
            derived = months_before(frame[rule.from_tenure_months], rule.as_of)
            frame[column] = frame[column].where(~empty, derived)
    for column, value in mapping.defaults.items():
        frame[column] = frame[column].where(frame[column] != "", value)
    derived_rows: list[Derived] = []
    if mapping.holdings is not None:
        derived_rows.append(_subscriptions(mapping, frame))
    if mapping.churn_label is not None:
        derived_rows.append(_churn_labels(mapping, frame))
    return Reshaped(frame, tuple(derived_rows))


def map_values(text: pd.Series, table: dict[str, str]) -> pd.Series:
    """Each value replaced by its entry in `table`; values without one are kept as they are."""
    mapped = text.map(table)
    return text.where(mapped.isna(), mapped)


def months_before(tenure: pd.Series, as_of: str) -> pd.Series:
    """`as_of` minus `tenure` months, as YYYY-MM-DD text; tenure text that is no number stays.

    An unparseable tenure is passed on as it is, so the date's validation names it.
    """
    months = pd.to_numeric(tenure.str.strip(), errors="coerce").to_numpy(dtype=float)
    days = np.round(np.nan_to_num(months) * DAYS_PER_MONTH)
    dates = pd.Timestamp(as_of) - pd.to_timedelta(days, unit="D")
    text = pd.Series(dates.strftime("%Y-%m-%d"), index=tenure.index)
    return text.where(~np.isnan(months), tenure)


def _held(column: HoldingColumn, text: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """Which rows hold something by this column, and the product id each names."""
    values = text.str.strip()
    if column.product is not None:
        if column.holds is None:
            held = np.asarray(values.str.lower().isin(TRUE_TEXT))
        else:
            held = np.asarray(values.isin(column.holds))
        return held, pd.Series(column.product, index=text.index)
    held = np.asarray((values != "") & ~values.isin(column.none))
    return held, map_values(values, column.values or {})


def _subscriptions(mapping: FileMapping, frame: pd.DataFrame) -> Derived:
    holdings = mapping.holdings
    assert holdings is not None
    start = holdings.start_date
    if start is None:
        starts = frame["signup_date"]
    elif DATE.match(start):
        starts = pd.Series(start, index=frame.index)
    else:
        starts = frame[start]
    parts: list[pd.DataFrame] = []
    origins: list[np.ndarray] = []
    for name in sorted(holdings.products):
        held, products = _held(holdings.products[name], frame[name])
        rows = np.flatnonzero(held)
        customers = frame["customer_id"].to_numpy(dtype=object)[rows]
        # One subscription per customer and column: a later export in which the column
        # names another product (dsl → fiber) updates that subscription.
        ids = pd.Series(customers, dtype=object) + f":{snake_case(name)}"
        parts.append(
            pd.DataFrame(
                {
                    "subscription_id": ids.to_numpy(dtype=object),
                    "customer_id": customers,
                    "product_id": products.to_numpy(dtype=object)[rows],
                    "start_date": starts.to_numpy(dtype=object)[rows],
                    "end_date": "",
                    "monthly_price": "",
                }
            )
        )
        origins.append(rows)
    return _in_file_order(SUBSCRIPTIONS, parts, origins)


def _churn_labels(mapping: FileMapping, frame: pd.DataFrame) -> Derived:
    rule = mapping.churn_label
    assert rule is not None
    values = frame[rule.column].str.strip()
    rows = np.flatnonzero(np.asarray(values != ""))
    chosen = values.to_numpy(dtype=object)[rows]
    if rule.churned is None:
        churned = pd.Series(chosen, dtype=object).str.lower().isin(TRUE_TEXT)
    else:
        churned = pd.Series(chosen, dtype=object).isin(rule.churned)
    labels = pd.DataFrame(
        {
            "customer_id": frame["customer_id"].to_numpy(dtype=object)[rows],
            "as_of": rule.as_of,
            "churned": np.where(churned.to_numpy(), "true", "false"),
            "churn_date": "",
        }
    )
    return _in_file_order(CHURN_LABELS, [labels], [rows])


def _in_file_order(entity: Entity, parts: list[pd.DataFrame], origins: list[np.ndarray]) -> Derived:
    if not parts:
        empty = pd.DataFrame({c: pd.Series([], dtype=object) for c in entity.column_names})
        return Derived(entity, empty, np.array([], dtype=np.int64))
    frame = pd.concat(parts, ignore_index=True)
    origin = np.concatenate(origins).astype(np.int64)
    # Row order decides which of two equal keys is "earlier in the file".
    order = np.argsort(origin, kind="stable")
    frame = frame.iloc[order].reset_index(drop=True)
    return Derived(entity, frame[entity.column_names].astype(object), origin[order])
