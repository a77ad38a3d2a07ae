"""The sequential tests experiments use: Welch and delta-method variances, mSPRT, Holm.

Pure numerics on arrays, one value per randomisation unit; `domain.experiment_stats` turns
them into per-variant, per-metric results with verdicts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nextoffer.domain.catalogue import FloatArray

_FloatLike = float | FloatArray


@dataclass(frozen=True)
class Estimate:
    """A variant's value against the control's, with the variance of their difference."""

    control: float
    variant: float
    difference: float
    """variant - control."""
    variance: float
    """Estimated variance of `difference`, from unit-level data."""


def mean_difference(control: FloatArray, variant: FloatArray) -> Estimate:
    """Difference of per-unit means with its unequal-variance (Welch) variance, via statsmodels.

    Both arms need at least two units.
    """
    # Imported here: statsmodels pulls in pandas, which the serving process must not load.
    from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

    compare = CompareMeans(DescrStatsW(variant), DescrStatsW(control))
    mean_c, mean_v = float(np.mean(control)), float(np.mean(variant))
    return Estimate(mean_c, mean_v, mean_v - mean_c, float(compare.std_meandiff_separatevar) ** 2)


def ratio_variance(numerator: FloatArray, denominator: FloatArray) -> float:
    """Variance of sum(numerator) / sum(denominator) over units, by the delta method.

    With per-unit sums x_i, y_i, means x̄, ȳ and R = x̄ / ȳ (Deng, Knoblich & Lu 2018,
    "Applying the delta method in metric analytics: a practical guide with novel ideas"):
    Var(R) ≈ (s_x² - 2 R s_xy + R² s_y²) / (n ȳ²), with the unit-level sample (co)variances.
    Units are the independent draws, so impressions of one customer may be correlated.
    """
    n = numerator.shape[0]
    mean_y = float(np.mean(denominator))
    ratio = float(np.mean(numerator)) / mean_y
    cov = np.cov(numerator, denominator, ddof=1)
    spread = cov[0, 0] - 2 * ratio * cov[0, 1] + ratio * ratio * cov[1, 1]
    return float(max(spread, 0.0) / (n * mean_y * mean_y))


def ratio_difference(
    control_num: FloatArray,
    control_den: FloatArray,
    variant_num: FloatArray,
    variant_den: FloatArray,
) -> Estimate:
    """Difference of two ratio metrics (sum of numerators over sum of denominators per arm)."""
    rate_c = float(np.sum(control_num) / np.sum(control_den))
    rate_v = float(np.sum(variant_num) / np.sum(variant_den))
    variance = ratio_variance(control_num, control_den) + ratio_variance(variant_num, variant_den)
    return Estimate(rate_c, rate_v, rate_v - rate_c, variance)


def msprt_p_value(estimate: _FloatLike, variance: _FloatLike, tau2: _FloatLike) -> FloatArray:
    """Always-valid p-value of a normal-mixture SPRT for "no difference"; vectorised.

    With the estimated difference θ̂, its variance V and a N(0, τ²) mixing distribution over
    the true difference, the mixture likelihood ratio against θ = 0 is (Robbins 1970;
    Johari, Koomen, Pekelis & Walsh 2017, "Peeking at A/B tests", the mSPRT with V = 2σ²/n;
    Howard, Ramdas, McAuliffe & Sekhon 2021, "Time-uniform, nonparametric, nonasymptotic
    confidence sequences", the normal mixture boundary)

        Λ = sqrt(V / (V + τ²)) · exp(τ² θ̂² / (2 V (V + τ²)))

    Λ is a nonnegative martingale under the null, so by Ville's inequality
    P(Λ ≥ 1/α at any look) ≤ α, and p = min(1, 1/Λ) may be read at every look: the chance it
    is ever below α is at most α. V is the plug-in estimate, so the guarantee is asymptotic
    (as in Johari et al.'s implementation).
    """
    theta = np.asarray(estimate, dtype=np.float64)
    v = np.asarray(variance, dtype=np.float64)
    t2 = np.asarray(tau2, dtype=np.float64)
    log_lr = 0.5 * np.log(v / (v + t2)) + t2 * theta * theta / (2 * v * (v + t2))
    return np.asarray(np.exp(-np.maximum(log_lr, 0.0)), dtype=np.float64)


def confidence_sequence(
    estimate: _FloatLike, variance: _FloatLike, tau2: _FloatLike, alpha: float
) -> tuple[FloatArray, FloatArray]:
    """The (1 - alpha) confidence sequence of the normal-mixture SPRT; vectorised.

    The set of differences θ₀ with Λ(θ₀) < 1/α (Λ as in `msprt_p_value`, centred on θ₀):

        θ̂ ± sqrt(V (V + τ²) / τ² · (log((V + τ²) / V) + 2 log(1/α)))

    It covers the true difference at every look at once with probability ≥ 1 - alpha.
    """
    theta = np.asarray(estimate, dtype=np.float64)
    v = np.asarray(variance, dtype=np.float64)
    t2 = np.asarray(tau2, dtype=np.float64)
    half = np.sqrt(v * (v + t2) / t2 * (np.log((v + t2) / v) + 2 * math.log(1 / alpha)))
    return np.asarray(theta - half, dtype=np.float64), np.asarray(theta + half, dtype=np.float64)


def holm(p_values: Sequence[float] | FloatArray) -> FloatArray:
    """Holm's step-down adjusted p-values, as statsmodels' multipletests(method="holm").

    Sorted ascending, p_(i) becomes max over j <= i of min(1, (m - j + 1) p_(j)). Written
    out because statsmodels runs a full gc.collect() on every Holm call (tens of milliseconds
    in a loaded process); the tests check the two agree. With always-valid p-values Holm
    bounds the chance of ever rejecting a true null at alpha: that needs some true null's
    p-value to go below alpha / m0 at some look, each with chance ≤ alpha / m0.
    """
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    m = p.shape[0]
    stepped = np.maximum.accumulate(p[order] * np.arange(m, 0, -1))
    adjusted = np.empty(m, dtype=np.float64)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted
