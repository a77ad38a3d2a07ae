"""The true Qini AUC: a ranking scored against known per-row effects, worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from nextoffer.evaluation.uplift import true_qini_auc_score, true_qini_curve

EFFECT = [0.3, -0.2, 0.1, 0.0]


def test_worked_example() -> None:
    # Ranked 0, 1, 3, 2: cumulative effects 0.3, 0.1, 0.1, 0.2; area 0.6. The random line
    # to (4, 0.2) has area 0.4; the perfect order (0.3, 0.1, 0, -0.2) has 1.2.
    x, y = true_qini_curve(EFFECT, [0.9, 0.8, 0.1, 0.5])
    assert x.tolist() == [0, 1, 2, 3, 4]
    assert y == pytest.approx([0, 0.3, 0.1, 0.1, 0.2])
    assert true_qini_auc_score(EFFECT, [0.9, 0.8, 0.1, 0.5]) == pytest.approx(0.25)


def test_perfect_reversed_and_tied_rankings() -> None:
    assert true_qini_auc_score(EFFECT, EFFECT) == pytest.approx(1.0)
    assert true_qini_auc_score(EFFECT, -np.asarray(EFFECT)) == pytest.approx(-1.0)
    # All tied: one point at the end, the random line itself.
    assert true_qini_auc_score(EFFECT, [0.5] * 4) == pytest.approx(0.0)
    assert np.isnan(true_qini_auc_score([0.1, 0.1], [1.0, 2.0]))


def test_a_random_ranking_scores_about_zero() -> None:
    rng = np.random.default_rng(0)
    effect = rng.normal(0.02, 0.1, 20_000)
    assert abs(true_qini_auc_score(effect, rng.random(20_000))) < 0.02


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        true_qini_auc_score([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="NaN"):
        true_qini_auc_score([0.1, float("nan")], [0.1, 0.2])
