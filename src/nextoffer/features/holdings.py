"""What a few customers hold and have held, as matrices: the live answer's holdings, no pandas.

`build_snapshot` uses the same function for any block of up to `FEW_CUSTOMERS` customers,
so a live answer and a precompute chunk read holdings by one definition.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

import numpy as np
import scipy.sparse as sp

from nextoffer.domain.vocabulary import TransactionType
from nextoffer.store import Connection
from nextoffer.store.reads import features as feature_reads

# What counts as "the customer took a product": a new plan, a purchase, a plan upgrade.
# Downgrades and cancellations are changes no offer is made for.
ACQUISITIONS = (TransactionType.ACTIVATION, TransactionType.PURCHASE, TransactionType.UPGRADE)
# Up to this many customers (the live API's one) the matrices are built from plain Python
# sets: pandas' per-call overhead, not the data, is what costs there.
FEW_CUSTOMERS = 64


def holdings(
    conn: Connection, as_of: datetime, customer_ids: Sequence[str], product_ids: Sequence[str]
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(held, history), customers × products, for a few customers (rows in the given order).

    `history` marks every product a customer held (subscriptions started by the `as_of`
    day) or acquired (`ACQUISITIONS` before `as_of`); `held` only subscriptions still open
    on that day. Reads the customers' id range only.
    """
    day = as_of.date()
    ids = [str(c) for c in customer_ids]
    if not ids:
        return holding_matrices([], [], ids, product_ids, day)
    subscriptions, acquired = feature_reads.holding_tuples(
        conn, day, [t.value for t in ACQUISITIONS], before=as_of, listed=(min(ids), max(ids))
    )
    return holding_matrices(subscriptions, acquired, ids, product_ids, day)


def holding_matrices(
    subscriptions: Iterable[tuple[Any, Any, Any, Any]],
    acquired: Iterable[tuple[Any, Any]],
    customer_ids: Sequence[str],
    product_ids: Sequence[str],
    day: date,
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(held, history) from (customer, product, start, end) and (customer, product) rows.

    Rows of other customers or products are left out; `end` None means still open.
    """
    row_of = {str(c): i for i, c in enumerate(customer_ids)}
    col_of = {str(p): j for j, p in enumerate(product_ids)}
    held: set[tuple[int, int]] = set()
    history: set[tuple[int, int]] = set()
    for customer, product, _start, end in subscriptions:
        row, col = row_of.get(str(customer)), col_of.get(str(product))
        if row is None or col is None:
            continue
        history.add((row, col))
        if end is None or end != end or _day(end) >= day:
            held.add((row, col))
    for customer, product in acquired:
        row, col = row_of.get(str(customer)), col_of.get(str(product))
        if row is not None and col is not None:
            history.add((row, col))
    shape = (len(row_of), len(col_of))
    return _cells(held, shape), _cells(history, shape)


def _day(value: date | datetime | str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _cells(cells: set[tuple[int, int]], shape: tuple[int, int]) -> sp.csr_matrix:
    """A 0/1 CSR matrix of `cells`, built directly (the COO route costs more for a few)."""
    ordered = sorted(cells)
    counts = np.bincount([r for r, _ in ordered], minlength=shape[0])[: shape[0]]
    indptr = np.concatenate(([0], np.cumsum(counts))).astype(np.int32)
    indices = np.array([c for _, c in ordered], dtype=np.int32)
    data = np.ones(len(ordered), dtype=np.float32)
    return sp.csr_matrix((data, indices, indptr), shape=shape)
