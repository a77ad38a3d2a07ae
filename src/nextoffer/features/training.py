"""Point-in-time training snapshots: features, holdings history and what was acquired next."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from nextoffer.features.builder import build_features
from nextoffer.features.holdings import ACQUISITIONS, FEW_CUSTOMERS, holdings
from nextoffer.features.segments import fit_segments
from nextoffer.store import Connection
from nextoffer.store.reads import features as feature_reads
from nextoffer.store.reads.features import PRODUCT_COLUMNS, current_features

__all__ = [
    "ACQUISITIONS",
    "PRODUCT_COLUMNS",
    "Snapshot",
    "acquisitions_between",
    "build_snapshot",
    "churn_labels",
    "current_features",
    "id_range",
    "load_products",
]


@dataclass(frozen=True)
class Snapshot:
    """Everything known about customers at one instant, aligned row by row.

    `history` marks every product a customer held or acquired before `as_of`; `held` only
    what was held on the `as_of` day. Rows follow `features` (sorted by customer id),
    columns follow the catalogue's product order.
    """

    as_of: datetime
    features: pd.DataFrame
    history: sp.csr_matrix
    held: sp.csr_matrix

    @property
    def customer_ids(self) -> np.ndarray:
        """Customer ids in row order."""
        return self.features["customer_id"].to_numpy()


def load_products(conn: Connection) -> list[dict[str, Any]]:
    """The catalogue as records in product id order (the column order of every matrix)."""
    return feature_reads.product_records(conn, PRODUCT_COLUMNS)


def build_snapshot(
    conn: Connection,
    as_of: datetime,
    product_ids: Sequence[str],
    *,
    segments: int,
    seed: int,
    features: pd.DataFrame | None = None,
    only_listed: bool = False,
) -> Snapshot:
    """Features (with segments), history and holdings of every customer as of `as_of`.

    Pass `features` to reuse a frame already computed (the features job's output); the
    segments are then taken from its `segment_id` column. With `only_listed`, holdings and
    history are read for the id range of `features` only (one customer for the live API, a
    chunk for precompute), instead of reading every row and dropping the unknown ones.
    """
    if features is None:
        features = build_features(conn, as_of)
        if len(features):
            features["segment_id"] = fit_segments(features, segments, seed=seed).labels
        else:
            features["segment_id"] = pd.Series([], dtype=np.int64)
    features = features.sort_values("customer_id", ignore_index=True)
    if len(features) <= FEW_CUSTOMERS:
        held, history = holdings(conn, as_of, list(features["customer_id"]), product_ids)
        return Snapshot(as_of=as_of, features=features, history=history, held=held)
    rows = _positions(features["customer_id"])
    columns = _positions(pd.Series(list(product_ids)))
    day = as_of.date()
    listed = id_range(features["customer_id"]) if only_listed else None
    subscriptions = feature_reads.subscription_rows(conn, day, listed)
    acquired = feature_reads.acquisition_pairs(
        conn, [t.value for t in ACQUISITIONS], before=as_of, listed=listed
    )
    still_held = subscriptions["end_date"].isna() | (
        pd.to_datetime(subscriptions["end_date"]) >= pd.Timestamp(day)
    )
    held = _matrix(subscriptions[still_held.to_numpy()], rows, columns)
    history = _matrix(pd.concat([subscriptions, acquired], ignore_index=True), rows, columns)
    return Snapshot(as_of=as_of, features=features, history=history, held=held)


def id_range(customer_ids: pd.Series) -> tuple[str, str] | None:
    """(smallest, largest) customer id, for range filters; None when there are none."""
    if not len(customer_ids):
        return None
    ids = customer_ids.astype(str)
    return str(ids.min()), str(ids.max())


def acquisitions_between(
    conn: Connection,
    start: datetime,
    end: datetime,
    customer_ids: np.ndarray,
    product_ids: Sequence[str],
) -> sp.csr_matrix:
    """Customers × products: 1 where the customer acquired the product in [start, end)."""
    frame = feature_reads.acquisition_pairs(
        conn, [t.value for t in ACQUISITIONS], since=start, before=end
    )
    return _matrix(frame, _positions(pd.Series(customer_ids)), _positions(pd.Series(product_ids)))


def churn_labels(conn: Connection) -> tuple[datetime | None, pd.DataFrame]:
    """The newest label date and its labels (customer_id, churned as 0/1)."""
    newest, labels = feature_reads.newest_churn_labels(conn)
    if newest is None:
        return None, labels
    as_of = datetime(newest.year, newest.month, newest.day, tzinfo=UTC)
    return as_of, labels


def _positions(ids: pd.Series) -> pd.Series:
    """Map id → position, for turning id pairs into matrix coordinates."""
    return pd.Series(np.arange(len(ids)), index=ids.to_numpy())


def _matrix(pairs: pd.DataFrame, rows: pd.Series, columns: pd.Series) -> sp.csr_matrix:
    """A binary sparse matrix from (customer_id, product_id) pairs; unknown ids are dropped."""
    r = pairs["customer_id"].map(rows)
    c = pairs["product_id"].map(columns)
    known = (r.notna() & c.notna()).to_numpy()
    coo = sp.coo_matrix(
        (
            np.ones(int(known.sum()), dtype=np.float32),
            (r[known].to_numpy(dtype=np.int64), c[known].to_numpy(dtype=np.int64)),
        ),
        shape=(len(rows), len(columns)),
    )
    matrix = coo.tocsr()
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix
