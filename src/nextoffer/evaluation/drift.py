"""Population Stability Index per feature, and a drift report against a threshold.

Usual reading of PSI: below 0.1 stable, 0.1 to 0.2 a moderate shift, above 0.2 a
significant shift (the default threshold).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pandas.api.types import is_bool_dtype, is_numeric_dtype

# Stands in for an empty bin's share, so ln(a / e) stays finite; not renormalised.
EPSILON = 1e-4
DEFAULT_THRESHOLD = 0.2

Proportions = NDArray[np.float64]


def psi(expected: pd.Series, actual: pd.Series, bins: int = 10) -> float:
    """Population Stability Index of ``actual`` against ``expected``: Σ (a − e) × ln(a / e).

    Numeric series: the interior cut points are the expected quantiles at 1/bins … (bins−1)/bins
    (duplicates dropped), bins are right-closed and the outer two open-ended. Other series
    (strings, categoricals, bools): each category seen in ``expected`` is a bin and every
    category only in ``actual`` shares one extra bin. Missing values form their own bin. Shares
    are over all rows, missing included; an empty bin's share becomes EPSILON (1e-4).
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    if expected.empty or actual.empty:
        raise ValueError("PSI needs at least one expected and one actual value")
    if _is_numeric(expected) != _is_numeric(actual):
        raise ValueError(
            f"expected ({expected.dtype}) and actual ({actual.dtype}) are not both numeric "
            "or both categorical"
        )
    if _is_numeric(expected):
        e, a = _numeric_proportions(expected, actual, bins)
    else:
        e, a = _categorical_proportions(expected, actual)
    e, a = np.where(e == 0, EPSILON, e), np.where(a == 0, EPSILON, a)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class DriftReport:
    """PSI of each feature and the threshold above which drift is flagged."""

    psi: dict[str, float]
    threshold: float

    @property
    def max_psi(self) -> float:
        """The largest PSI over features (0.0 when there are none)."""
        return max(self.psi.values(), default=0.0)

    @property
    def worst_feature(self) -> str | None:
        """The feature with the largest PSI, or None when there are none."""
        return max(self.psi, key=self.psi.__getitem__) if self.psi else None

    @property
    def flagged(self) -> bool:
        """True when some feature's PSI exceeds the threshold."""
        return self.max_psi > self.threshold

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary: per-feature PSI, threshold, max, worst feature and flag."""
        return {
            "psi": dict(self.psi),
            "threshold": self.threshold,
            "max_psi": self.max_psi,
            "worst_feature": self.worst_feature,
            "flagged": self.flagged,
        }


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    bins: int = 10,
) -> DriftReport:
    """PSI of every column of ``current`` against ``reference``.

    Without ``columns``, the columns both frames have, in ``reference``'s order.
    """
    if columns is None:
        names = [str(c) for c in reference.columns if c in current.columns]
    else:
        names = list(columns)
        missing = [c for c in names if c not in reference.columns or c not in current.columns]
        if missing:
            raise ValueError(f"columns missing from reference or current: {missing}")
    return DriftReport(
        psi={name: psi(reference[name], current[name], bins) for name in names},
        threshold=threshold,
    )


def _is_numeric(series: pd.Series) -> bool:
    return is_numeric_dtype(series.dtype) and not is_bool_dtype(series.dtype)


def _numeric_proportions(
    expected: pd.Series, actual: pd.Series, bins: int
) -> tuple[Proportions, Proportions]:
    reference = expected.dropna().to_numpy(dtype=np.float64)
    interior = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    edges = np.unique(np.quantile(reference, interior)) if reference.size else np.empty(0)
    return _binned_shares(expected, edges), _binned_shares(actual, edges)


def _binned_shares(values: pd.Series, edges: NDArray[np.float64]) -> Proportions:
    """Shares of the right-closed bins (−inf, c1], …, (cm, inf), then of missing values."""
    numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = np.isnan(numbers)
    index = np.where(missing, edges.size + 1, np.searchsorted(edges, numbers, side="left"))
    return np.bincount(index, minlength=edges.size + 2) / numbers.size


def _categorical_proportions(
    expected: pd.Series, actual: pd.Series
) -> tuple[Proportions, Proportions]:
    categories = pd.unique(expected.dropna().to_numpy(dtype=object))
    return _category_shares(expected, categories), _category_shares(actual, categories)


def _category_shares(values: pd.Series, categories: NDArray[Any]) -> Proportions:
    """Shares of each expected category, then of unseen categories, then of missing values."""
    codes = pd.Index(categories).get_indexer(values.to_numpy(dtype=object))
    missing = values.isna().to_numpy()
    unseen = (codes == -1) & ~missing
    index = np.where(missing, categories.size + 1, np.where(unseen, categories.size, codes))
    return np.bincount(index, minlength=categories.size + 2) / len(values)
