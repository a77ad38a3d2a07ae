"""Holdings-snapshot examples: hide one held product per customer and learn to find it again.

When the data has no acquisitions to learn from (an operator export of what customers hold
today), "customers like you hold X" is the signal: for every customer holding at least two
active products one of them is hidden (seeded), and the models see only the rest. Nothing
derived from the hidden product may stay visible, or it would leak into the inputs: it is
removed from the history and the holdings, the holdings counts are recomputed from what
is left, and a base plan equal to it is blanked.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from nextoffer.features.builder import HOLDING_COLUMNS
from nextoffer.models.candidates import ProductTable
from nextoffer.models.offer_fit import Examples

MIN_HELD = 2
_COUNT_OF_CATEGORY = {category.value: column for category, column in HOLDING_COLUMNS.items()}


def hide_one(
    features: pd.DataFrame,
    held: sp.csr_matrix,
    history: sp.csr_matrix,
    products: ProductTable,
    seed: int,
) -> Examples:
    """Examples with one held product hidden per customer holding at least `MIN_HELD`.

    Customers holding fewer keep everything visible and have no label (they still inform
    the recommenders and the ranker's negatives).
    """
    held = _binary(held)
    history = _binary(history)
    active_held = sp.csr_matrix(held.multiply(products.active[None, :].astype(np.float32)))
    active_held.eliminate_zeros()
    counts = np.diff(active_held.indptr)
    rng = np.random.default_rng(seed)
    rows = np.flatnonzero(counts >= MIN_HELD)
    picks = np.floor(rng.random(len(rows)) * counts[rows]).astype(np.int64)
    hidden_cols = active_held.indices[active_held.indptr[rows] + picks]
    labels = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, hidden_cols)), shape=held.shape)
    visible_held = _without(held, labels)
    visible_history = _without(history, labels)
    frame = recount_holdings(features, visible_held, products)
    if "plan_id" in frame.columns and len(rows):
        hidden_ids = np.asarray(products.product_ids, dtype=object)[hidden_cols]
        plan = frame["plan_id"].to_numpy(dtype=object)
        same = plan[rows] == hidden_ids
        plan = plan.copy()
        plan[rows[same]] = None
        frame["plan_id"] = plan
    return Examples(
        features=frame,
        history=visible_history,
        held=visible_held,
        recent=visible_held,
        labels=labels,
    )


def recount_holdings(
    features: pd.DataFrame, held: sp.csr_matrix, products: ProductTable
) -> pd.DataFrame:
    """`features` with `products_held` and the per-category counts taken from `held`."""
    frame = features.copy()
    binary = _binary(held)
    if "products_held" in frame.columns:
        frame["products_held"] = np.diff(binary.indptr).astype(np.int64)
    categories = np.asarray(products.categories)
    for category, column in _COUNT_OF_CATEGORY.items():
        if column not in frame.columns:
            continue
        in_category = (categories == category).astype(np.float32)
        frame[column] = np.asarray(binary @ in_category).ravel().astype(np.int64)
    return frame


def _binary(matrix: sp.csr_matrix) -> sp.csr_matrix:
    out = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    out.sum_duplicates()
    out.eliminate_zeros()
    out.data[:] = 1.0
    return out


def _without(matrix: sp.csr_matrix, hidden: sp.csr_matrix) -> sp.csr_matrix:
    kept = sp.csr_matrix(matrix - matrix.multiply(hidden))
    kept.eliminate_zeros()
    return kept
