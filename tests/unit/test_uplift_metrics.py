"""Uplift metrics equal scikit-uplift 0.5.1's, and the average treatment effect's intervals.

scikit-uplift is a test-only dependency: the product code never imports it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from nextoffer.evaluation.uplift import (
    average_treatment_effect,
    qini_auc_score,
    qini_curve,
    uplift_at_k,
    uplift_auc_score,
    uplift_curve,
)

sklift = pytest.importorskip("sklift.metrics")

# sklift calls sklearn's deprecated stable_cumsum, and takes means of empty top-k slices
# (NaN, as ours gives without a warning): the warnings are theirs, not ours.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Function stable_cumsum is deprecated"),
    pytest.mark.filterwarnings("ignore:Mean of empty slice"),
    pytest.mark.filterwarnings("ignore:invalid value encountered"),
]

# A hand-computed example: scores are distinct and in row order.
Y = [1, 0, 1, 0, 1, 0]
T = [1, 1, 0, 0, 1, 0]
SCORES = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]


def test_curves_on_the_hand_made_example() -> None:
    x, qini = qini_curve(Y, SCORES, T)
    _, uplift = uplift_curve(Y, SCORES, T)

    assert x.tolist() == [0, 1, 2, 3, 4, 5, 6]
    # Treated responses − control responses × n_treated / n_control (0 while no control).
    assert qini.tolist() == pytest.approx([0, 1, 1, -1, 0, 0.5, 1], abs=1e-15)
    # (treated rate − control rate) × rows.
    assert uplift.tolist() == pytest.approx([0, 1, 1, -1.5, 0, 5 / 6, 2], abs=1e-15)


def test_normalised_scores_on_the_hand_made_example() -> None:
    # Qini: actual area 2, diagonal 3, perfect area 9.5 → (2 − 3) / (9.5 − 3).
    assert qini_auc_score(Y, SCORES, T) == pytest.approx(-2 / 13, abs=1e-15)
    # Uplift: actual area 7/3, diagonal 6, perfect area 43/3 → −11/25.
    assert uplift_auc_score(Y, SCORES, T) == pytest.approx(-11 / 25, abs=1e-15)
    # Top 50 % of each arm: treated rows 0 (y 1); control row 2 (y 1).
    assert uplift_at_k(Y, SCORES, T, k=0.5) == 0.0
    # Top 3 rows overall: treated 1, 0; control 1.
    assert uplift_at_k(Y, SCORES, T, k=0.5, strategy="overall") == -0.5
    for ours, theirs in (
        (qini_auc_score, sklift.qini_auc_score),
        (uplift_auc_score, sklift.uplift_auc_score),
    ):
        assert ours(Y, SCORES, T) == theirs(Y, SCORES, T)


def test_a_perfect_ranking_scores_one_and_its_reverse_below_zero() -> None:
    y, t = np.array(Y), np.array(T)
    perfect = y * t - y * (1 - t)

    assert qini_auc_score(y, perfect, t) == pytest.approx(1.0)
    assert qini_auc_score(y, -perfect, t) < 0


def _random_case(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outcomes, scores and treatment of a random size, with ties in half of the cases."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, 500))
    y = rng.integers(0, 2, n)
    t = (rng.random(n) < rng.uniform(0.2, 0.8)).astype(int)
    # Make sure both arms and both outcomes occur (sklift needs it).
    y[:2], t[:4] = [0, 1], [0, 1, 0, 1]
    scores = rng.integers(0, 6, n).astype(float) if seed % 2 else rng.normal(size=n)
    return y, scores, t


@pytest.mark.parametrize("seed", range(40))
def test_equal_to_scikit_uplift_on_random_arrays(seed: int) -> None:
    y, scores, t = _random_case(seed)

    for ours, theirs in ((qini_curve, sklift.qini_curve), (uplift_curve, sklift.uplift_curve)):
        x_ours, v_ours = ours(y, scores, t)
        x_theirs, v_theirs = theirs(y, scores, t)
        assert np.array_equal(x_ours, x_theirs)
        np.testing.assert_allclose(v_ours, v_theirs, rtol=0, atol=1e-12)
    assert qini_auc_score(y, scores, t) == pytest.approx(
        sklift.qini_auc_score(y, scores, t), abs=1e-12
    )
    assert uplift_auc_score(y, scores, t) == pytest.approx(
        sklift.uplift_auc_score(y, scores, t), abs=1e-12
    )
    for k in (0.3, 0.5, 3):
        for strategy in ("by_group", "overall"):
            theirs_k = sklift.uplift_at_k(y, scores, t, strategy=strategy, k=k)
            ours_k = uplift_at_k(y, scores, t, k=k, strategy=strategy)
            assert (math.isnan(theirs_k) and math.isnan(ours_k)) or ours_k == pytest.approx(
                theirs_k, abs=1e-12
            ), (k, strategy)


def test_ties_are_broken_like_scikit_uplift_in_uplift_at_k() -> None:
    # Every score equal: the "top" rows are the last ones (reversed stable sort).
    y = np.array([1, 1, 0, 0, 0, 0, 1, 0, 0, 1])
    t = np.array([1, 0, 1, 0, 1, 0, 1, 0, 1, 0])
    scores = np.zeros(10)

    ours = uplift_at_k(y, scores, t, k=0.4)

    assert ours == sklift.uplift_at_k(y, scores, t, strategy="by_group", k=0.4)
    # Treated rows from the end: 8 (0), 6 (1); control rows: 9 (1), 7 (0).
    assert ours == 0.0


def test_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="treatment must hold only 0"):
        qini_auc_score([0, 1], [0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="differ in length"):
        uplift_auc_score([0, 1, 1], [0.1, 0.2], [0, 1])
    with pytest.raises(ValueError, match=r"k=1\.5"):
        uplift_at_k(Y, SCORES, T, k=1.5)


def test_numeric_outcomes_are_scored_with_the_qini_ordering_as_perfect() -> None:
    rng = np.random.default_rng(3)
    y = rng.gamma(1.0, 50.0, 200) * (rng.random(200) < 0.3)
    t = rng.integers(0, 2, 200)
    perfect = y * t - y * (1 - t)

    assert qini_auc_score(y, perfect, t) == pytest.approx(1.0)
    assert uplift_auc_score(y, perfect, t) == pytest.approx(1.0)
    assert -1.0 < qini_auc_score(y, rng.random(200), t) < 1.0


def test_ate_of_a_binary_outcome_is_newcombes_interval() -> None:
    rng = np.random.default_rng(0)
    t = np.repeat([1, 0], [300, 150])
    y = np.r_[rng.random(300) < 0.16, rng.random(150) < 0.10].astype(int)

    ate = average_treatment_effect(y, t)

    p1, p0 = y[:300].mean(), y[300:].mean()
    assert ate.value == pytest.approx(p1 - p0)
    assert (ate.treated_rows, ate.control_rows, ate.method) == (300, 150, "newcombe")
    # Newcombe's hybrid score interval, from the two Wilson intervals.
    l1, u1 = proportion_confint(y[:300].sum(), 300, method="wilson")
    l0, u0 = proportion_confint(y[300:].sum(), 150, method="wilson")
    low = p1 - p0 - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    high = p1 - p0 + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
    assert (ate.ci_low, ate.ci_high) == pytest.approx((low, high), abs=1e-12)
    assert ate.to_dict()["ci95"] == [ate.ci_low, ate.ci_high]


def test_ate_of_a_numeric_outcome_is_welchs_interval() -> None:
    rng = np.random.default_rng(1)
    treated, control = rng.normal(12.0, 9.0, 80), rng.normal(10.0, 3.0, 40)

    ate = average_treatment_effect(np.r_[treated, control], np.repeat([1, 0], [80, 40]))

    welch = stats.ttest_ind(treated, control, equal_var=False).confidence_interval(0.95)
    assert ate.method == "welch"
    assert ate.value == pytest.approx(treated.mean() - control.mean())
    assert (ate.ci_low, ate.ci_high) == pytest.approx((welch.low, welch.high), abs=1e-10)


def test_ate_covers_the_true_difference_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(7)
    t = np.repeat([1, 0], [400, 200])
    draws = rng.random((400, 600)) < np.where(t == 1, 0.15, 0.10)
    covered = 0
    for y in draws.astype(int):
        ate = average_treatment_effect(y, t)
        covered += ate.ci_low <= 0.05 <= ate.ci_high

    assert 0.92 <= covered / 400 <= 0.98


def test_ate_needs_two_rows_per_arm() -> None:
    with pytest.raises(ValueError, match="at least 2 rows"):
        average_treatment_effect([1, 0, 1], [1, 1, 0])
