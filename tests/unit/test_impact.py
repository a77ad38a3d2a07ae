"""Treated vs control: intervals equal statsmodels' and scipy's, thresholds, JSON round trip."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from nextoffer.domain.impact import (
    MIN_PER_ARM,
    NO_SEGMENT,
    CustomerOutcomes,
    ImpactPeriod,
    ImpactReport,
    impact_report,
)

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)
PERIOD = ImpactPeriod(AS_OF, window_days=30, period_days=90)
NOW = datetime(2026, 6, 2, 8, 0, tzinfo=UTC)


def outcomes(
    arms: list[tuple[str, int, int, list[float], int]],
) -> CustomerOutcomes:
    """Customers from (arm, segment, customers, margins of the first ones, churned) groups.

    The first `len(margins)` customers of a group acquired (with those margins); the first
    `churned` left.
    """
    ids, arm, acquired, margin, churned, segment = [], [], [], [], [], []
    for name, seg, n, margins, left in arms:
        for i in range(n):
            ids.append(f"{name}-{seg}-{i}")
            arm.append(name)
            acquired.append(1 if i < len(margins) else 0)
            margin.append(margins[i] if i < len(margins) else 0.0)
            churned.append(1 if i < left else 0)
            segment.append(seg)
    return CustomerOutcomes(
        np.array(ids, dtype=object),
        np.array(arm, dtype=object),
        np.array(acquired),
        np.array(margin, dtype=float),
        np.array(churned),
        np.array(segment),
    )


def newcombe(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    """Newcombe's hybrid score interval of p1 - p2, from the two Wilson intervals (1998, #10)."""
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = proportion_confint(x1, n1, alpha=0.05, method="wilson")
    l2, u2 = proportion_confint(x2, n2, alpha=0.05, method="wilson")
    d = p1 - p2
    return d - math.hypot(p1 - l1, u2 - p2), d + math.hypot(u1 - p1, p2 - l2)


WORLD = outcomes(
    [
        # treated, segment 0: 400 customers, 60 acquired, 20 left
        ("treated", 0, 400, [12.0, 8.0, 30.0] * 20, 20),
        # control, segment 0: 100 customers, 6 acquired, 9 left
        ("control", 0, 100, [10.0, 5.0] * 3, 9),
        # segment 1: enough treated, too few control
        ("treated", 1, 50, [4.0] * 10, 5),
        ("control", 1, MIN_PER_ARM - 1, [4.0] * 2, 3),
        # customers with no segment: both arms big enough
        ("treated", NO_SEGMENT, 40, [7.0] * 8, 2),
        ("control", NO_SEGMENT, 35, [7.0] * 3, 4),
    ]
)


@pytest.fixture(scope="module")
def report() -> ImpactReport:
    return impact_report(WORLD, PERIOD, NOW, segment_names={0: "young", 1: "families"})


def test_overall_rates_and_intervals_equal_statsmodels_and_scipy(report: ImpactReport) -> None:
    o = report.overall
    assert (o.treated.customers, o.control.customers) == (490, 164)
    assert (o.treated.acquired, o.control.acquired) == (78, 11)
    assert (o.treated.churned, o.control.churned) == (27, 16)
    assert o.treated.acquisition_rate == pytest.approx(78 / 490)
    assert o.treated.margin_total == pytest.approx(20 * 50.0 + 40.0 + 56.0)
    assert o.control.margin_per_customer == pytest.approx((3 * 15.0 + 8.0 + 21.0) / 164)
    assert o.enough_data

    acquisition = confint_proportions_2indep(78, 490, 11, 164, method="newcomb", compare="diff")
    assert o.acquisition.estimate == pytest.approx(78 / 490 - 11 / 164)
    assert (o.acquisition.ci_low, o.acquisition.ci_high) == pytest.approx(acquisition)
    # Newcombe's interval, written out from the two arms' Wilson intervals.
    assert (o.acquisition.ci_low, o.acquisition.ci_high) == pytest.approx(
        newcombe(78, 490, 11, 164)
    )
    churn = newcombe(27, 490, 16, 164)
    assert o.churn.estimate == pytest.approx(27 / 490 - 16 / 164)
    assert (o.churn.ci_low, o.churn.ci_high) == pytest.approx(churn)

    treated = WORLD.margin[WORLD.arm == "treated"]
    control = WORLD.margin[WORLD.arm == "control"]
    welch = stats.ttest_ind(treated, control, equal_var=False).confidence_interval(0.95)
    assert o.margin.estimate == pytest.approx(treated.mean() - control.mean())
    assert (o.margin.ci_low, o.margin.ci_high) == pytest.approx((welch.low, welch.high))
    assert report.methods.acquisition == "newcomb" and report.methods.margin == "welch"


def test_verdicts_follow_the_interval_not_a_p_value(report: ImpactReport) -> None:
    o = report.overall
    # 15.9 % against 6.7 %: the interval lies above zero.
    assert o.acquisition.ci_low is not None and o.acquisition.ci_low > 0
    assert o.acquisition.verdict.startswith("offers raised acquisition by 9.2 points (95 % CI")
    # Churn 5.5 % against 9.8 %: the interval still includes zero.
    assert o.churn.ci_low is not None and o.churn.ci_high is not None
    assert o.churn.ci_low < 0 < o.churn.ci_high
    assert o.churn.verdict.startswith("no clear difference in churn: -4.2 points")
    assert not any(p in o.churn.verdict for p in ("p =", "p <", "significant"))


def test_segments_below_the_threshold_say_not_enough_data(report: ImpactReport) -> None:
    by_id = {s.segment_id: s for s in report.segments}
    assert [s.segment_id for s in report.segments] == [0, 1, NO_SEGMENT]
    assert [s.label for s in report.segments] == ["0 · young", "1 · families", "no segment"]
    young, families, none = by_id[0], by_id[1], by_id[NO_SEGMENT]
    assert young.enough_data and none.enough_data
    assert young.acquisition.estimate == pytest.approx(60 / 400 - 6 / 100)
    assert (young.acquisition.ci_low, young.acquisition.ci_high) == pytest.approx(
        newcombe(60, 400, 6, 100)
    )
    assert not families.enough_data
    assert (families.treated.customers, families.control.customers) == (50, MIN_PER_ARM - 1)
    assert families.treated.acquisition_rate == pytest.approx(10 / 50)
    for difference in (families.acquisition, families.margin, families.churn):
        assert difference.estimate is None and difference.ci_low is None
        assert difference.verdict == (
            f"not enough data yet: 50 treated and {MIN_PER_ARM - 1} control customers, "
            f"{MIN_PER_ARM} of each needed"
        )


def test_the_report_survives_a_json_round_trip(report: ImpactReport) -> None:
    text = json.dumps(report.to_json(), allow_nan=False)
    back = ImpactReport.from_json(json.loads(text))
    assert back == report
    assert back.to_json() == report.to_json()
    assert report.as_of == "2026-06-01T00:00:00+00:00"
    assert report.exposed_from == "2026-03-03T00:00:00+00:00"
    assert report.exposed_to == "2026-05-02T00:00:00+00:00"


def test_margin_that_never_varies_has_no_interval() -> None:
    flat = outcomes([("treated", 0, 40, [], 0), ("control", 0, 40, [], 0)])
    found = impact_report(flat, PERIOD, NOW).overall
    assert found.enough_data
    assert found.margin.estimate == 0.0 and found.margin.ci_low is None
    assert "no interval" in found.margin.verdict
    # Rates of 0 in both arms still have a Newcombe interval around 0.
    assert found.acquisition.ci_low is not None and found.acquisition.ci_low < 0
    assert found.acquisition.ci_high is not None and found.acquisition.ci_high > 0


def test_no_customers_at_all_is_a_report_too() -> None:
    empty = outcomes([])
    found = impact_report(empty, PERIOD, NOW, pending_customers=7)
    assert found.exposed_customers == 0 and found.segments == []
    assert found.overall.treated.acquisition_rate is None
    assert found.overall.acquisition.verdict.startswith("not enough data yet: 0 treated")
    assert ImpactReport.from_json(json.loads(json.dumps(found.to_json()))) == found


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown arms"):
        CustomerOutcomes(
            np.array(["a"]), np.array(["shown"]), np.array([1]), np.array([1.0]),
            np.array([0]), np.array([0]),
        )  # fmt: skip
    with pytest.raises(ValueError, match="longer than the window"):
        ImpactPeriod(AS_OF, window_days=30, period_days=30)


def test_a_period_no_longer_than_the_window_is_a_config_error() -> None:
    from nextoffer.config import Settings
    from nextoffer.domain.errors import ConfigError
    from nextoffer.pipelines.impact import run_impact

    settings = Settings(impact_window_days=30, impact_period_days=30)
    with pytest.raises(ConfigError, match="NEXTOFFER_IMPACT_PERIOD_DAYS"):
        run_impact(None, settings)  # type: ignore[arg-type]  # refused before any read
