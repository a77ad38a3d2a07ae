"""Population Stability Index and drift reports: hand-computed values and flags."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from nextoffer.evaluation.drift import EPSILON, DriftReport, drift_report, psi


def test_identical_distributions_have_zero_psi_and_no_flag() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"arpu": rng.gamma(2.0, 20.0, 2000), "plan": rng.choice(["s", "m", "l"], 2000)}
    )

    report = drift_report(frame, frame.copy())

    assert report.psi == {"arpu": pytest.approx(0.0), "plan": pytest.approx(0.0)}
    assert not report.flagged


def test_same_distribution_other_sample_stays_below_the_stable_line() -> None:
    rng = np.random.default_rng(1)
    value = psi(pd.Series(rng.normal(size=5000)), pd.Series(rng.normal(size=5000)))

    assert value < 0.1


def test_shifted_numeric_distribution_is_flagged() -> None:
    rng = np.random.default_rng(2)
    reference = pd.DataFrame({"usage": rng.normal(0, 1, 5000), "tenure": rng.normal(0, 1, 5000)})
    current = pd.DataFrame({"usage": rng.normal(1, 1, 5000), "tenure": rng.normal(0, 1, 5000)})

    report = drift_report(reference, current)

    assert report.psi["usage"] > 0.2
    assert report.psi["tenure"] < 0.1
    assert report.flagged
    assert report.worst_feature == "usage"
    assert report.max_psi == report.psi["usage"]


def test_hand_computed_numeric_psi() -> None:
    # bins=2: the one interior cut is the expected median, 2.5; bins (-inf, 2.5], (2.5, inf)
    # expected [1, 2, 3, 4] -> shares 0.50, 0.50 (missing bin: 0 -> ε in both, adds nothing)
    # actual   [1, 1, 1, 4] -> shares 0.75, 0.25
    # PSI = (0.75 - 0.5) ln(0.75/0.5) + (0.25 - 0.5) ln(0.25/0.5)
    expected_psi = 0.25 * math.log(1.5) + (-0.25) * math.log(0.5)

    value = psi(pd.Series([1, 2, 3, 4]), pd.Series([1, 1, 1, 4]), bins=2)

    assert value == pytest.approx(expected_psi)
    assert value == pytest.approx(0.2746531, abs=1e-7)


def test_bins_are_right_closed_and_outer_bins_open() -> None:
    # A value equal to the cut (2.5) belongs to the lower bin; far values to the outer bins.
    same = psi(pd.Series([1, 2, 3, 4]), pd.Series([2.5, -100.0, 3.0, 1000.0]), bins=2)

    assert same == pytest.approx(0.0)


def test_missing_values_form_their_own_bin() -> None:
    # expected [1, 2, 3, 4]: 0.5, 0.5, missing 0 (-> ε)
    # actual [1, NaN, 3, 4]: 0.25, 0.5, missing 0.25
    expected_psi = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.25 - EPSILON) * math.log(0.25 / EPSILON)

    value = psi(pd.Series([1.0, 2.0, 3.0, 4.0]), pd.Series([1.0, np.nan, 3.0, 4.0]), bins=2)

    assert value == pytest.approx(expected_psi)


def test_repeated_quantiles_collapse_into_unique_edges() -> None:
    # Nine zeros and a one: every decile cut is 0 except the last, so the edges are {0, 0.1}
    expected = pd.Series([0.0] * 9 + [1.0])

    assert psi(expected, expected.copy()) == pytest.approx(0.0)
    assert psi(expected, pd.Series([1.0] * 10)) > 0.2


def test_categorical_with_a_new_category() -> None:
    # bins: "a", "b", unseen, missing
    # expected ["a", "a", "b", "b"] -> 0.5, 0.5, ε, ε
    # actual   ["a", "b", "c", "c"] -> 0.25, 0.25, 0.5, ε
    expected_psi = 2 * (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.5 - EPSILON) * math.log(
        0.5 / EPSILON
    )

    value = psi(pd.Series(["a", "a", "b", "b"]), pd.Series(["a", "b", "c", "c"]))

    assert value == pytest.approx(expected_psi)


def test_unseen_categories_share_one_bin() -> None:
    two_new = psi(pd.Series(["a", "b"]), pd.Series(["c", "d"]))
    one_new = psi(pd.Series(["a", "b"]), pd.Series(["c", "c"]))

    assert two_new == pytest.approx(one_new)


def test_booleans_and_categoricals_are_categories() -> None:
    # expected [T, T, F, F] -> 0.5, 0.5; actual [T, T, T, F] -> 0.75, 0.25
    expected_psi = 0.25 * math.log(1.5) + (-0.25) * math.log(0.5)

    booleans = psi(pd.Series([True, True, False, False]), pd.Series([True, True, True, False]))
    categories = psi(
        pd.Series(["x", "x", "y", "y"], dtype="category"),
        pd.Series(["x", "x", "x", "y"], dtype="category"),
    )

    assert booleans == pytest.approx(expected_psi)
    assert categories == pytest.approx(expected_psi)


def test_missing_categories_form_their_own_bin() -> None:
    # expected ["a", None] -> a 0.5, unseen ε, missing 0.5; actual ["a", "a"] -> 1.0, ε, ε
    expected_psi = 0.5 * math.log(2.0) + (EPSILON - 0.5) * math.log(EPSILON / 0.5)

    value = psi(pd.Series(["a", None]), pd.Series(["a", "a"]))

    assert value == pytest.approx(expected_psi)


def test_mixed_kinds_and_empty_series_are_rejected() -> None:
    with pytest.raises(ValueError, match="numeric"):
        psi(pd.Series([1.0, 2.0]), pd.Series(["a", "b"]))
    with pytest.raises(ValueError, match="at least one"):
        psi(pd.Series([], dtype=float), pd.Series([1.0]))
    with pytest.raises(ValueError, match="bins"):
        psi(pd.Series([1.0]), pd.Series([1.0]), bins=0)


def test_report_columns_threshold_and_dict() -> None:
    reference = pd.DataFrame({"a": [1, 2, 3, 4], "b": ["x", "y", "x", "y"], "only_ref": 1})
    current = pd.DataFrame({"a": [1, 1, 1, 4], "b": ["x", "y", "x", "y"]})

    report = drift_report(reference, current, bins=2, threshold=0.3)

    assert list(report.psi) == ["a", "b"]
    assert not report.flagged  # 0.2747 <= 0.3
    assert report.to_dict() == {
        "psi": report.psi,
        "threshold": 0.3,
        "max_psi": pytest.approx(0.2746531, abs=1e-7),
        "worst_feature": "a",
        "flagged": False,
    }
    assert list(drift_report(reference, current, columns=["b"]).psi) == ["b"]
    with pytest.raises(ValueError, match="only_ref"):
        drift_report(reference, current, columns=["only_ref"])


def test_empty_report() -> None:
    report = DriftReport(psi={}, threshold=0.2)

    assert report.max_psi == 0.0
    assert report.worst_feature is None
    assert not report.flagged
