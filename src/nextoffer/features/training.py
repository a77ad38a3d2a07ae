"""Point-in-time training snapshots: features, holdings history and what was acquired next."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from nextoffer.domain.vocabulary import TransactionType
from nextoffer.features.builder import build_features
from nextoffer.features.segments import fit_segments
from nextoffer.store import Connection
from nextoffer.store.reads import features as feature_reads
from nextoffer.store.reads.features import current_features

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

# What counts as "the customer took a product": a new plan, a purchase, a plan upgrade.
# Downgrades and cancellations are changes no offer is made for.
ACQUISITIONS = (TransactionType.ACTIVATION, TransactionType.PURCHASE, TransactionType.UPGRADE)
PRODUCT_COLUMNS = (
    "product_id",
    "name",
    "category",
    "price",
    "margin",
    "upfront_price",
    "contract_types",
    "min_tenure_months",
    "regions",
    "channels",
    "requires_category",
    "is_retention_offer",
    "active",
    # Product rules (migration 0006): what the one eligibility step reads besides the above.
    "requires_products",
    "requires_attribute",
    "exclusion_group",
    "upgrades_from",
)


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
    rows = _positions(features["customer_id"])
    columns = _positions(pd.Series(list(product_ids)))
    day = as_of.date()
    listed = id_range(features["customer_id"]) if only_listed else None
    subscriptions = feature_reads.subscription_rows(conn, day, listed)
    acquired = feature_reads.acquisition_pairs(
        conn, [t.value for t in ACQUISITIONS], before=as_of, listed=listed
    )
    if len(features) <= _FEW_CUSTOMERS:
        held, history = _small_matrices(subscriptions, acquired, features, product_ids, day)
        return Snapshot(as_of=as_of, features=features, history=history, held=held)
    still_held = subscriptions["end_date"].isna() | (
        pd.to_datetime(subscriptions["end_date"]) >= pd.Timestamp(day)
    )
    held = _matrix(subscriptions[still_held.to_numpy()], rows, columns)
    history = _matrix(pd.concat([subscriptions, acquired], ignore_index=True), rows, columns)
    return Snapshot(as_of=as_of, features=features, history=history, held=held)


# Up to this many customers (the live API's one) the matrices are built from plain Python
# sets: pandas' per-call overhead, not the data, is what costs there.
_FEW_CUSTOMERS = 64


def _small_matrices(
    subscriptions: pd.DataFrame,
    acquired: pd.DataFrame,
    features: pd.DataFrame,
    product_ids: Sequence[str],
    day: date,
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(held, history) exactly as the pandas path builds them, for a few customers."""
    row_of = {str(c): i for i, c in enumerate(features["customer_id"])}
    col_of = {str(p): j for j, p in enumerate(product_ids)}
    held: set[tuple[int, int]] = set()
    history: set[tuple[int, int]] = set()
    for customer, product, _start, end in subscriptions.itertuples(index=False):
        cell = (row_of.get(str(customer)), col_of.get(str(product)))
        if cell[0] is None or cell[1] is None:
            continue
        history.add(cell)  # type: ignore[arg-type]
        if end is None or end != end or pd.Timestamp(end) >= pd.Timestamp(day):
            held.add(cell)  # type: ignore[arg-type]
    for customer, product in acquired.itertuples(index=False):
        cell = (row_of.get(str(customer)), col_of.get(str(product)))
        if cell[0] is not None and cell[1] is not None:
            history.add(cell)  # type: ignore[arg-type]
    shape = (len(row_of), len(col_of))
    return _cells(held, shape), _cells(history, shape)


def _cells(cells: set[tuple[int, int]], shape: tuple[int, int]) -> sp.csr_matrix:
    rows = np.fromiter((r for r, _ in cells), dtype=np.int64, count=len(cells))
    cols = np.fromiter((c for _, c in cells), dtype=np.int64, count=len(cells))
    data = np.ones(len(cells), dtype=np.float32)
    return sp.csr_matrix((data, (rows, cols)), shape=shape)


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
