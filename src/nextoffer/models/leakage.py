"""Inputs that alone give a training label away are dropped before the ranker learns from them.

A customer column that separates takers from non-takers of some product almost perfectly
(single-feature ROC AUC above `MAX_SINGLE_AUC`, either direction) is far more likely to be
written after the fact (a "months since last purchase" computed at export time, a flag set
by the sale) than to be a real signal; a model leaning on it would look excellent in the
test table and serve nonsense. Such inputs are dropped with one warning line naming them.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from nextoffer.models.candidates import RankerInputs
from nextoffer.models.offer_fit import Examples

log = logging.getLogger(__name__)

MAX_SINGLE_AUC = 0.95
# Products with fewer takers than this are not checked: their AUCs are too noisy.
MIN_POSITIVES = 30
# At most this many of the most-taken products are checked, on at most this many rows.
MAX_PRODUCTS = 10
MAX_ROWS = 10_000


def single_feature_auc(values: np.ndarray, labels: np.ndarray) -> float:
    """max(AUC, 1 − AUC) of one numeric column against 0/1 labels (missing values = median)."""
    filled = np.where(np.isnan(values), np.nanmedian(values), values)
    if np.all(filled == filled[0]):
        return 0.5
    auc = float(roc_auc_score(labels, filled))
    return max(auc, 1.0 - auc)


def leaking_columns(
    examples: Examples, columns: list[str], *, took_anything: bool = False, seed: int = 0
) -> dict[str, float]:
    """Numeric customer columns whose single-feature AUC for some label is above the limit.

    For each of the most-taken products, the rows are the customers who did not hold it,
    the label whether they took it. With `took_anything` (labels from sales windows, where
    a customer may take nothing) the label "took any product" is checked too: that is how
    a column computed after the sale shows (a recency that marks the buyers).
    """
    found: dict[str, float] = {}
    if took_anything:
        took = np.diff(examples.labels.indptr) > 0
        if MIN_POSITIVES <= took.sum() <= len(took) - MIN_POSITIVES:
            for name in columns:
                x = pd.to_numeric(examples.features[name], errors="coerce").to_numpy(float)
                if not np.isnan(x).all():
                    auc = single_feature_auc(x, took)
                    if auc > MAX_SINGLE_AUC:
                        found[name] = auc
    labels = examples.labels.tocsc()
    takers = np.diff(labels.indptr)
    products = [int(j) for j in np.argsort(-takers)[:MAX_PRODUCTS] if takers[j] >= MIN_POSITIVES]
    if not products or not columns:
        return found
    rng = np.random.default_rng(seed)
    n = len(examples)
    rows = np.sort(rng.choice(n, min(n, MAX_ROWS), replace=False))
    held = examples.held[rows].tocsc()
    values = {
        c: pd.to_numeric(examples.features[c].iloc[rows], errors="coerce").to_numpy(float)
        for c in columns
    }
    for j in products:
        candidate = np.asarray(held[:, j].todense()).ravel() == 0
        label = np.asarray(labels[rows, j].todense()).ravel() > 0
        label = label[candidate]
        if label.sum() < MIN_POSITIVES or label.all():
            continue
        for column, column_values in values.items():
            x = column_values[candidate]
            if np.isnan(x).all():
                continue
            auc = single_feature_auc(x, label)
            if auc > MAX_SINGLE_AUC:
                found[column] = max(found.get(column, 0.0), auc)
    return found


def drop_leaking(
    examples: Examples, inputs: RankerInputs, *, took_anything: bool = False
) -> tuple[RankerInputs, list[str]]:
    """`inputs` without the numeric columns that give a label away, and their names."""
    found = leaking_columns(examples, list(inputs.numeric), took_anything=took_anything)
    if not found:
        return inputs, []
    names = sorted(found)
    log.warning(
        "dropped input(s) that alone predict a training label (single-feature AUC > %.2f): %s",
        MAX_SINGLE_AUC,
        ", ".join(f"{name} ({found[name]:.3f})" for name in names),
    )
    kept = tuple(c for c in inputs.numeric if c not in found)
    return replace(inputs, numeric=kept), names
