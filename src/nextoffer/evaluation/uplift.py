"""Uplift metrics (Qini and uplift curves, uplift at k) and the average treatment effect.

The curves and scores follow scikit-uplift 0.5.1 (``sklift.metrics``) exactly, ties included:
rows are ordered by ``np.argsort(uplift, kind="mergesort")[::-1]`` and the curves are read at
the last row of each run of equal scores. The normalised AUCs subtract the straight line from
(0, 0) to the curve's end and divide by the same area of the perfect curve. scikit-uplift
only accepts 0/1 outcomes; here a numeric outcome is allowed too, with both perfect curves
ordering treated rows by outcome descending and control rows by outcome ascending
(scikit-uplift's perfect Qini ordering). See docs/evaluation.md.

Where each row's true effect is known (generated data's planted truth), `true_qini_auc_score`
scores a ranking against it instead of against observed outcomes (docs/models.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
# Two-sided 95 % interval for the average treatment effect.
ALPHA = 0.05


def _arrays(
    y_true: ArrayLike, uplift: ArrayLike, treatment: ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Float arrays of equal length, with `treatment` checked to be 0/1."""
    y = np.asarray(y_true, dtype=float).ravel()
    scores = np.asarray(uplift, dtype=float).ravel()
    t = np.asarray(treatment, dtype=float).ravel()
    if not len(y) == len(scores) == len(t):
        raise ValueError(
            f"y_true, uplift and treatment differ in length: {len(y)}, {len(scores)}, {len(t)}"
        )
    if not np.isin(t, [0.0, 1.0]).all():
        raise ValueError("treatment must hold only 0 (control) and 1 (treated)")
    if np.isnan(y).any() or np.isnan(scores).any():
        raise ValueError("y_true and uplift must not contain NaN")
    return y, scores, t


def _descending(scores: FloatArray) -> NDArray[np.intp]:
    """Row order by score, highest first; ties in reverse row order (scikit-uplift's order)."""
    order: NDArray[np.intp] = np.argsort(scores, kind="mergesort")[::-1]
    return order


def _cumulative(
    y: FloatArray, scores: FloatArray, t: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """At the end of each run of equal scores: rows, treated, control, treated and control sums."""
    order = _descending(scores)
    y, scores, t = y[order], scores[order], t[order]
    # Only the last row of a run of ties is a threshold, so the order within ties cannot matter.
    thresholds = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    num_all = (thresholds + 1).astype(float)
    num_treated = np.cumsum(t, dtype=np.float64)[thresholds]
    y_treated = np.cumsum(np.where(t == 1, y, 0.0), dtype=np.float64)[thresholds]
    y_control = np.cumsum(np.where(t == 0, y, 0.0), dtype=np.float64)[thresholds]
    return num_all, num_treated, num_all - num_treated, y_treated, y_control


def _from_origin(x: FloatArray, values: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Prefix (0, 0) so that the curve starts at the origin."""
    return np.r_[0.0, x], np.r_[0.0, values]


def _ratio(numerator: FloatArray, denominator: FloatArray) -> FloatArray:
    """Element-wise numerator / denominator, 0 where the denominator is 0."""
    out: FloatArray = np.divide(
        numerator, denominator, out=np.zeros_like(numerator), where=denominator != 0
    )
    return out


def qini_curve(
    y_true: ArrayLike, uplift: ArrayLike, treatment: ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Qini curve: (rows targeted, treated responses − control responses × n_treated/n_control).

    Points are at every distinct score, highest first, starting from (0, 0).
    """
    num_all, num_treated, num_control, y_treated, y_control = _cumulative(
        *_arrays(y_true, uplift, treatment)
    )
    values = y_treated - y_control * _ratio(num_treated, num_control)
    return _from_origin(num_all, values)


def uplift_curve(
    y_true: ArrayLike, uplift: ArrayLike, treatment: ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Uplift curve: (rows targeted, (treated mean − control mean) × rows targeted).

    Points are at every distinct score, highest first, starting from (0, 0).
    """
    num_all, num_treated, num_control, y_treated, y_control = _cumulative(
        *_arrays(y_true, uplift, treatment)
    )
    values = (_ratio(y_treated, num_treated) - _ratio(y_control, num_control)) * num_all
    return _from_origin(num_all, values)


def _is_binary(y: FloatArray) -> bool:
    """True when every outcome is 0 or 1."""
    return bool(np.isin(y, [0.0, 1.0]).all())


def _perfect_qini_scores(y: FloatArray, t: FloatArray) -> FloatArray:
    """Ordering of the perfect curve: treated by outcome descending, control ascending."""
    scores: FloatArray = y * t - y * (1.0 - t)
    return scores


def _perfect_uplift_scores(y: FloatArray, t: FloatArray) -> FloatArray:
    """Ordering of scikit-uplift's perfect uplift curve (binary outcomes), else the Qini one."""
    if not _is_binary(y):
        return _perfect_qini_scores(y, t)
    control_responders = int(np.sum((y == 1) & (t == 0)))
    treated_non_responders = int(np.sum((y == 0) & (t == 1)))
    summand = y if control_responders > treated_non_responders else t
    scores: FloatArray = 2.0 * (y == t) + summand
    return scores


def _area(x: FloatArray, values: FloatArray) -> float:
    """Trapezoidal area under a curve whose x never decreases."""
    return float(np.trapezoid(values, x))


def _normalised_auc(
    actual: tuple[FloatArray, FloatArray], perfect: tuple[FloatArray, FloatArray]
) -> float:
    """(area − diagonal) / (perfect area − diagonal); NaN when the perfect curve is the diagonal."""
    x_perfect, y_perfect = perfect
    baseline = _area(np.array([0.0, x_perfect[-1]]), np.array([0.0, y_perfect[-1]]))
    best = _area(*perfect) - baseline
    if best == 0.0:
        return float("nan")
    return (_area(*actual) - baseline) / best


def qini_auc_score(y_true: ArrayLike, uplift: ArrayLike, treatment: ArrayLike) -> float:
    """Normalised area under the Qini curve (scikit-uplift's, with negative effects).

    0 is a random ranking, 1 the perfect one (treated responders first, control responders
    last); NaN when no ranking can beat random (for instance no row has a positive outcome).
    """
    y, scores, t = _arrays(y_true, uplift, treatment)
    return _normalised_auc(qini_curve(y, scores, t), qini_curve(y, _perfect_qini_scores(y, t), t))


def uplift_auc_score(y_true: ArrayLike, uplift: ArrayLike, treatment: ArrayLike) -> float:
    """Normalised area under the uplift curve (scikit-uplift's `uplift_auc_score`)."""
    y, scores, t = _arrays(y_true, uplift, treatment)
    return _normalised_auc(
        uplift_curve(y, scores, t), uplift_curve(y, _perfect_uplift_scores(y, t), t)
    )


def true_qini_curve(effect: ArrayLike, uplift: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """(rows targeted, sum of their true effects), highest predicted uplift first.

    The Qini curve of an infinite experiment: what treating the top rows gains in
    expectation. Points at every distinct score (ties as in `qini_curve`), from (0, 0).
    """
    values = np.asarray(effect, dtype=float).ravel()
    scores = np.asarray(uplift, dtype=float).ravel()
    if len(values) != len(scores):
        raise ValueError(f"effect and uplift differ in length: {len(values)}, {len(scores)}")
    if np.isnan(values).any() or np.isnan(scores).any():
        raise ValueError("effect and uplift must not contain NaN")
    order = _descending(scores)
    values, scores = values[order], scores[order]
    thresholds = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    gained = np.cumsum(values, dtype=np.float64)[thresholds]
    return _from_origin((thresholds + 1).astype(float), gained)


def true_qini_auc_score(effect: ArrayLike, uplift: ArrayLike) -> float:
    """Normalised area under the true Qini curve: a ranking scored against true effects.

    `effect` is each row's true effect (e.g. P(stay | treated) − P(stay | control)). The
    area between the ranking's cumulative true effect and the straight line of a random
    ranking (from (0, 0) to (rows, total effect)), divided by the same area of the perfect
    ranking (largest true effect first): 0 is random, 1 perfect, below 0 worse than
    random. NaN when every row has the same effect (no ranking beats random).
    """
    return _normalised_auc(true_qini_curve(effect, uplift), true_qini_curve(effect, effect))


def uplift_at_k(
    y_true: ArrayLike,
    uplift: ArrayLike,
    treatment: ArrayLike,
    k: float = 0.3,
    strategy: str = "by_group",
) -> float:
    """Treated mean − control mean among the top-k rows by predicted uplift.

    `k` is a share in (0, 1) or a row count. "by_group" takes the top k of each arm
    separately (k × arm size rows, rounded down, when k is a share); "overall" takes the top
    k of all rows and compares the arms among them. NaN when an arm has no row in the top.
    """
    y, scores, t = _arrays(y_true, uplift, treatment)
    n = len(y)
    if strategy not in ("overall", "by_group"):
        raise ValueError(f"strategy must be 'overall' or 'by_group', got {strategy!r}")
    is_share = isinstance(k, float)
    if (is_share and not 0.0 < k < 1.0) or (not is_share and not 0 < k < n):
        raise ValueError(f"k={k} must be a share in (0, 1) or a row count in (0, {n})")
    order = _descending(scores)
    y, t = y[order], t[order]
    if strategy == "overall":
        top = int(n * k) if is_share else int(k)
        y_top, t_top = y[:top], t[:top]
        treated, control = y_top[t_top == 1], y_top[t_top == 0]
    else:
        treated, control = y[t == 1], y[t == 0]
        n_treated = int(len(treated) * k) if is_share else int(k)
        n_control = int(len(control) * k) if is_share else int(k)
        if n_treated > len(treated) or n_control > len(control):
            raise ValueError(f"k={k} is more rows than an arm has")
        treated, control = treated[:n_treated], control[:n_control]
    if len(treated) == 0 or len(control) == 0:
        return float("nan")
    return float(treated.mean() - control.mean())


@dataclass(frozen=True)
class TreatmentEffect:
    """Average treatment effect (treated mean − control mean) and its 95 % interval."""

    value: float
    ci_low: float
    ci_high: float
    treated_rows: int
    control_rows: int
    treated_mean: float
    control_mean: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "value": self.value,
            "ci95": [self.ci_low, self.ci_high],
            "treated_rows": self.treated_rows,
            "control_rows": self.control_rows,
            "treated_mean": self.treated_mean,
            "control_mean": self.control_mean,
            "method": self.method,
        }


def average_treatment_effect(y: ArrayLike, treatment: ArrayLike) -> TreatmentEffect:
    """Difference in mean outcome, treated − control, with a two-sided 95 % interval.

    0/1 outcomes get Newcombe's hybrid score interval for a difference of two independent
    proportions (statsmodels `confint_proportions_2indep`, which stays inside [−1, 1] and
    behaves at rates near 0 or 1); other outcomes get Welch's t interval (statsmodels
    `CompareMeans.tconfint_diff` with unequal variances).
    """
    from statsmodels.stats.proportion import confint_proportions_2indep
    from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

    values = np.asarray(y, dtype=float).ravel()
    t = np.asarray(treatment, dtype=float).ravel()
    if len(values) != len(t):
        raise ValueError(f"y and treatment differ in length: {len(values)}, {len(t)}")
    if not np.isin(t, [0.0, 1.0]).all():
        raise ValueError("treatment must hold only 0 (control) and 1 (treated)")
    treated, control = values[t == 1], values[t == 0]
    if len(treated) < 2 or len(control) < 2:
        raise ValueError(
            f"each arm needs at least 2 rows; treated has {len(treated)}, "
            f"control has {len(control)}"
        )
    if _is_binary(values):
        low, high = confint_proportions_2indep(
            int(treated.sum()),
            len(treated),
            int(control.sum()),
            len(control),
            method="newcombe",
            compare="diff",
            alpha=ALPHA,
        )
        method = "newcombe"
    else:
        compare = CompareMeans(DescrStatsW(treated), DescrStatsW(control))
        low, high = compare.tconfint_diff(alpha=ALPHA, usevar="unequal")
        method = "welch"
    return TreatmentEffect(
        value=float(treated.mean() - control.mean()),
        ci_low=float(low),
        ci_high=float(high),
        treated_rows=len(treated),
        control_rows=len(control),
        treated_mean=float(treated.mean()),
        control_mean=float(control.mean()),
        method=method,
    )
