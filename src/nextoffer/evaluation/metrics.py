"""Ranking and classification metrics, with the definitions of Microsoft Recommenders.

Ranking metrics take the top-k item indices per user (``recommended``, padded with -1) and a
sparse user × item matrix of relevant test items, and follow
``recommenders/evaluation/python_evaluation.py`` (precision_at_k, recall_at_k, ndcg_at_k with
binary relevance, map). See docs/evaluation.md for the formulas.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

PADDING = -1
RANKING_METRICS = ("precision", "recall", "ndcg", "map", "hit_rate", "mrr")

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.int64]


def ranking_metrics(
    recommended: np.ndarray,
    relevant: sp.csr_matrix,
    k: int,
    n_items: int | None = None,
    *,
    skip_empty_rows: bool = False,
) -> dict[str, float]:
    """Precision, recall, nDCG, MAP, hit rate and MRR at k, averaged over users; and coverage.

    ``recommended`` is n_users × K item column indices, best first, padded at the end with -1;
    only the first k columns are used and K may be smaller than k. ``relevant`` is
    n_users × n_items, a non-zero entry marks a relevant test item.

    Users (rows) without any relevant test item are left out of every average. A user with
    relevant items but no recommendation at all counts as zero, like Microsoft Recommenders'
    ``ndcg_at_k``; ``skip_empty_rows=True`` leaves such users out instead, like its
    precision/recall/map, which average over users present in both frames. When no user is
    evaluated the averages are 0.0 and ``users`` is 0.0.

    ``coverage@k`` is measured over every row, with or without test items: it describes what
    the system shows. Its denominator is ``n_items`` (default: the columns of ``relevant``).
    """
    top = _top_k(recommended, k)
    truth = _relevance_matrix(relevant, top)
    per_user = _per_user(top, truth, k, skip_empty_rows)
    evaluated = ~np.isnan(per_user["ndcg"])
    result = {f"{name}@{k}": _mean(values[evaluated]) for name, values in per_user.items()}
    catalogue = truth.shape[1] if n_items is None else n_items
    result[f"coverage@{k}"] = catalog_coverage(top, k, catalogue)
    result["users"] = float(evaluated.sum())
    return result


def per_user_metrics(
    recommended: np.ndarray,
    relevant: sp.csr_matrix,
    k: int,
    *,
    skip_empty_rows: bool = False,
) -> dict[str, FloatArray]:
    """Each ranking metric per row (keys as RANKING_METRICS); NaN where the row is not evaluated.

    The mean over the non-NaN entries is what ``ranking_metrics`` reports, so paired tests
    between two models can use the rows where both are non-NaN.
    """
    top = _top_k(recommended, k)
    return _per_user(top, _relevance_matrix(relevant, top), k, skip_empty_rows)


def per_user_ndcg(
    recommended: np.ndarray,
    relevant: sp.csr_matrix,
    k: int,
    *,
    skip_empty_rows: bool = False,
) -> FloatArray:
    """nDCG@k of every row (binary relevance); NaN for rows without relevant test items."""
    return per_user_metrics(recommended, relevant, k, skip_empty_rows=skip_empty_rows)["ndcg"]


def catalog_coverage(recommended: np.ndarray, k: int, n_items: int) -> float:
    """Distinct items among the first k columns of every row (padding ignored) ÷ n_items."""
    if n_items < 1:
        raise ValueError(f"n_items must be at least 1, got {n_items}")
    top = _top_k(recommended, k)
    return float(np.unique(top[top != PADDING]).size / n_items)


def classification_metrics(y_true: np.ndarray, y_score: np.ndarray) -> dict[str, float]:
    """ROC AUC, average precision, Brier score and top-decile lift of binary scores.

    ``y_true`` holds 0/1 (or bools) and must contain both classes; ``y_score`` holds
    probabilities in [0, 1] (the Brier score needs them).
    """
    truth, scores = _binary_inputs(y_true, y_score)
    return {
        "roc_auc": float(roc_auc_score(truth, scores)),
        "pr_auc": float(average_precision_score(truth, scores)),
        "brier": float(brier_score_loss(truth, scores)),
        "lift_top_decile": lift_top_decile(truth, scores),
        "positives_rate": float(truth.mean()),
        "rows": float(truth.size),
    }


def lift_top_decile(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Positive rate among the ceil(n/10) highest scores ÷ overall positive rate.

    Ties are broken by a stable sort: among equal scores the earlier row ranks higher.
    """
    truth, scores = _binary_inputs(y_true, y_score)
    n_top = math.ceil(truth.size / 10)
    order = np.argsort(-scores, kind="stable")
    return float(truth[order[:n_top]].mean() / truth.mean())


def _per_user(top: IntArray, truth: Any, k: int, skip_empty_rows: bool) -> dict[str, FloatArray]:
    hits = _hit_matrix(top, truth)
    n_relevant = np.diff(truth.indptr).astype(np.float64)
    n_hits = hits.sum(axis=1).astype(np.float64)
    ranks = np.arange(1, top.shape[1] + 1, dtype=np.float64)
    # Rows without relevant items divide by zero here; they become NaN below anyway.
    with np.errstate(divide="ignore", invalid="ignore"):
        metrics = {
            "precision": n_hits / k,
            "recall": n_hits / n_relevant,
            "ndcg": _dcg(hits, k) / _ideal_dcg(n_relevant, k),
            "map": (hits * np.cumsum(hits, axis=1) / ranks).sum(axis=1) / n_relevant,
            "hit_rate": (n_hits > 0).astype(np.float64),
            "mrr": _reciprocal_rank_of_first_hit(hits),
        }
    excluded = n_relevant == 0
    if skip_empty_rows:
        excluded |= ~(top != PADDING).any(axis=1)
    for values in metrics.values():
        values[excluded] = np.nan
    return metrics


def _discounts(k: int) -> FloatArray:
    """1 / log2(rank + 1) for ranks 1..k (the base cancels out in nDCG)."""
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def _dcg(hits: BoolArray, k: int) -> FloatArray:
    return hits.astype(np.float64) @ _discounts(k)[: hits.shape[1]]


def _ideal_dcg(n_relevant: FloatArray, k: int) -> FloatArray:
    cumulative = np.concatenate(([0.0], np.cumsum(_discounts(k))))
    return cumulative[np.minimum(n_relevant, k).astype(np.int64)]


def _reciprocal_rank_of_first_hit(hits: BoolArray) -> FloatArray:
    if hits.shape[1] == 0:
        return np.zeros(hits.shape[0], dtype=np.float64)
    first = np.argmax(hits, axis=1)
    return np.where(hits.any(axis=1), 1.0 / (first + 1.0), 0.0)


def _hit_matrix(top: IntArray, truth: Any) -> BoolArray:
    """hits[u, j] is True when the j-th recommendation of user u is a relevant item."""
    valid = top != PADDING
    hits = np.zeros(top.shape, dtype=bool)
    if valid.any():
        rows = np.nonzero(valid)[0]
        hits[valid] = np.asarray(truth[rows, top[valid]]).ravel() != 0
    return hits


def _top_k(recommended: np.ndarray, k: int) -> IntArray:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    array = np.asarray(recommended)
    if array.ndim != 2:
        raise ValueError(f"recommended must be 2-D (users × ranks), got {array.ndim}-D")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"recommended must hold integer item indices, got {array.dtype}")
    top = array[:, :k].astype(np.int64, copy=False)
    _check_recommendations(top)
    return top


def _check_recommendations(top: IntArray) -> None:
    if (top < PADDING).any():
        raise ValueError("recommended holds negative item indices other than the -1 padding")
    valid = top != PADDING
    if (valid[:, 1:] & ~valid[:, :-1]).any():
        # Ranks are column positions, so a gap would silently demote the items after it.
        raise ValueError("the -1 padding must come after every recommended item in a row")
    ordered = np.sort(top, axis=1)
    if ((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] != PADDING)).any():
        raise ValueError("a row of recommended lists the same item twice")


def _relevance_matrix(relevant: Any, top: IntArray) -> Any:
    truth = sp.csr_matrix(relevant, copy=True)
    truth.sum_duplicates()
    # Stored zeros are not relevant items, and must not count in |relevant|.
    truth.eliminate_zeros()
    if truth.shape[0] != top.shape[0]:
        raise ValueError(f"recommended has {top.shape[0]} rows but relevant has {truth.shape[0]}")
    if top.size and top.max() >= truth.shape[1]:
        raise ValueError(
            f"recommended item index {int(top.max())} is outside relevant's "
            f"{truth.shape[1]} columns"
        )
    return truth


def _binary_inputs(y_true: np.ndarray, y_score: np.ndarray) -> tuple[FloatArray, FloatArray]:
    truth = np.asarray(y_true)
    scores = np.asarray(y_score, dtype=np.float64)
    if truth.ndim != 1 or scores.ndim != 1 or truth.shape != scores.shape:
        raise ValueError(
            f"y_true and y_score must be 1-D of the same length, got {truth.shape} and "
            f"{scores.shape}"
        )
    classes = np.unique(truth)
    if not np.isin(classes, [0, 1]).all():
        raise ValueError(f"y_true must hold 0/1 labels, got values {classes.tolist()[:5]}")
    if classes.size < 2:
        raise ValueError(
            f"y_true has a single class ({classes.tolist()}): AUC and lift need both "
            "positives and negatives"
        )
    if not np.isfinite(scores).all():
        raise ValueError("y_score holds NaN or infinite values")
    return truth.astype(np.float64), scores


def _mean(values: FloatArray) -> float:
    return float(values.mean()) if values.size else 0.0
