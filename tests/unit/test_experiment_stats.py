"""Per-unit experiment statistics: always-valid mSPRT, A/A and power by simulation, SRM, Holm."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from nextoffer.domain.experiment_stats import (
    DOCUMENTED_POWER,
    MIN_UNITS_PER_ARM,
    Metric,
    UnitOutcomes,
    analyse_experiment,
    analyse_units,
    sample_ratio,
)
from nextoffer.domain.experiments import (
    ExperimentDesign,
    ExperimentUnit,
    Strategy,
    Variant,
    assign,
)
from nextoffer.domain.sequential_tests import (
    confidence_sequence,
    holm,
    msprt_p_value,
    ratio_variance,
)

ALPHA = 0.05
LOOKS = 20


# --- simulated worlds -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class World:
    """Per-customer data of one simulated experiment, plus the impression-level accepts."""

    outcomes: UnitOutcomes
    arm: np.ndarray
    impressions: np.ndarray
    accepts: np.ndarray


def clustered_world(seed: int, units: int = 4_000) -> World:
    """An A/A experiment: both arms draw from one population, impressions correlated per customer.

    Each customer has 1-20 impressions and their own click and accept rates, beta distributed;
    the impression-level ICC of a beta-binomial is 1 / (a + b + 1): 0.25 for accepts (a + b = 3),
    0.2 for clicks (a + b = 4). Churn and complaints vary per customer too.
    """
    rng = np.random.default_rng(seed)
    arm = (rng.random(units) < 0.5).astype(np.int64)
    impressions = rng.integers(1, 21, units)
    clicks = rng.binomial(impressions, rng.beta(0.4, 3.6, units))
    accepts = rng.binomial(impressions, rng.beta(0.15, 2.85, units))
    churned = (rng.random(units) < rng.beta(0.5, 9.5, units)).astype(np.float64)
    complaints = rng.poisson(rng.gamma(0.5, 0.2, units))
    outcomes = UnitOutcomes(
        variant=arm,
        converted=(accepts > 0).astype(np.float64),
        clicks=clicks,
        impressions=impressions,
        churned=churned,
        complaints=complaints,
    )
    return World(outcomes, arm, impressions, accepts)


def impression_icc(successes: np.ndarray, trials: np.ndarray) -> float:
    """One-way ANOVA intraclass correlation of 0/1 impression outcomes grouped by customer.

    With k customers, n_i impressions and x_i successes each, N = sum n_i, grand rate p:
    MSB = sum n_i (x_i/n_i - p)^2 / (k - 1), MSW = sum (x_i - x_i^2/n_i) / (N - k),
    n0 = (N - sum n_i^2 / N) / (k - 1), ICC = (MSB - MSW) / (MSB + (n0 - 1) MSW).
    """
    x, n = successes.astype(np.float64), trials.astype(np.float64)
    k, total = x.shape[0], n.sum()
    p = x.sum() / total
    msb = np.sum(n * (x / n - p) ** 2) / (k - 1)
    msw = np.sum(x - x * x / n) / (total - k)
    n0 = (total - np.sum(n * n) / total) / (k - 1)
    return float((msb - msw) / (msb + (n0 - 1) * msw))


def two_proportion_test(
    x_control: int, n_control: int, x_variant: int, n_variant: int, alpha: float
) -> bool:
    """The old method (nextoffer's results before per-unit statistics): significant or not.

    A pooled two-proportion z-test of accepts per impression, two-sided, as if every
    impression were independent: p = erfc(|z| / sqrt(2)) with
    z = (x_v / n_v - x_c / n_c) / sqrt(p (1 - p) (1 / n_c + 1 / n_v)), p = pooled rate.
    """
    if n_control <= 0 or n_variant <= 0:
        return False
    x_control, x_variant = min(x_control, n_control), min(x_variant, n_variant)
    pooled = (x_control + x_variant) / (n_control + n_variant)
    variance = pooled * (1 - pooled) * (1 / n_control + 1 / n_variant)
    if variance <= 0:
        return False
    z = (x_variant / n_variant - x_control / n_control) / math.sqrt(variance)
    return math.erfc(abs(z) / math.sqrt(2)) < alpha


def look_sizes(units: int) -> list[int]:
    return [units * k // LOOKS for k in range(1, LOOKS + 1)]


# --- A/A: false positives with 20 looks ----------------------------------------------------------


def test_aa_always_valid_per_unit_holds_alpha_where_the_impression_z_test_does_not() -> None:
    seeds = range(200)
    new_ever = np.zeros(len(seeds), dtype=bool)
    old_ever = np.zeros(len(seeds), dtype=bool)
    iccs = []
    for s in seeds:
        world = clustered_world(s)
        iccs.append(impression_icc(world.accepts, world.impressions))
        for n in look_sizes(len(world.outcomes)):
            # The new method: every metric, after Holm, through the same results function.
            new_ever[s] |= analyse_units(world.outcomes.head(n), ["control", "b"]).any_significant
            # The old method: accepts per impression, pooled z-test, at the same looks.
            arm, x, m = world.arm[:n], world.accepts[:n], world.impressions[:n]
            old_ever[s] |= two_proportion_test(
                int(x[arm == 0].sum()),
                int(m[arm == 0].sum()),
                int(x[arm == 1].sum()),
                int(m[arm == 1].sum()),
                ALPHA,
            )
    assert min(iccs) >= 0.1, f"simulated impressions are not correlated enough: {min(iccs):.3f}"
    new_share, old_share = new_ever.mean(), old_ever.mean()
    # Measured: new 0 of 200 experiments, old 0.87 (174 of 200); impression ICC 0.22 to 0.29.
    assert new_share <= 1.5 * ALPHA, f"new method: {new_share:.3f} of A/A experiments significant"
    assert old_share > 1.5 * ALPHA, f"old test only {old_share:.3f}: the simulation shows nothing"
    assert old_share > 5 * new_share + 0.2


# --- power ---------------------------------------------------------------------------------------


def test_documented_power_is_reached_with_twenty_looks() -> None:
    claim = DOCUMENTED_POWER
    per_arm, units = claim.units_per_arm, 2 * claim.units_per_arm
    found = []
    for seed in range(100):
        rng = np.random.default_rng([seed, 7])
        arm = np.repeat([0, 1], per_arm)
        rng.shuffle(arm)
        rate = np.where(arm == 1, claim.baseline * (1 + claim.relative_lift), claim.baseline)
        impressions = rng.integers(1, 21, units)
        outcomes = UnitOutcomes(
            variant=arm,
            converted=(rng.random(units) < rate).astype(np.float64),
            clicks=rng.binomial(impressions, rng.beta(0.4, 3.6, units)),
            impressions=impressions,
            churned=(rng.random(units) < 0.05).astype(np.float64),
            complaints=rng.poisson(0.1, units),
        )
        hit = False
        for n in look_sizes(units):
            result = analyse_units(outcomes.head(n), ["control", "b"], alpha=claim.alpha)
            conversion = result.variant("b").metric(Metric.CONVERSION)
            hit = hit or (conversion.significant and conversion.difference > 0)
        found.append(hit)
    power = float(np.mean(found))
    assert power >= claim.power - 0.05, f"found in {power:.2f} of experiments"


# --- the mSPRT itself --------------------------------------------------------------------------


def test_msprt_p_value_matches_the_mixture_likelihood_ratio_by_hand() -> None:
    # theta = 0.02, V = 1e-4, tau^2 = 4e-4: Lambda = sqrt(1/5) * exp(4e-4 * 4e-4 / (2e-4 * 5e-4))
    #   = 0.4472136 * exp(1.6) = 0.4472136 * 4.9530324 = 2.2150640, p = 0.4514543
    assert float(msprt_p_value(0.02, 1e-4, 4e-4)) == pytest.approx(0.4514543, rel=1e-6)
    # A tiny difference: Lambda < 1, p capped at 1.
    assert float(msprt_p_value(0.0, 1e-4, 4e-4)) == 1.0


def test_confidence_sequence_excludes_zero_exactly_when_p_is_below_alpha() -> None:
    theta = np.linspace(-0.1, 0.1, 201)
    low, high = confidence_sequence(theta, 1e-4, 4e-4, ALPHA)
    p = msprt_p_value(theta, 1e-4, 4e-4)
    excludes = (low > 0) | (high < 0)
    assert np.array_equal(excludes, p < ALPHA)
    assert excludes.any() and not excludes.all()
    # Wider than the fixed-horizon 95 % interval: the price of looking at any time.
    assert float(high[100] - low[100]) > 2 * 1.96 * math.sqrt(1e-4)


def test_not_enough_data_below_the_minimum_units_per_arm() -> None:
    world = clustered_world(3)
    few = analyse_units(world.outcomes.head(150), ["control", "b"])
    metric = few.variant("b").metric(Metric.CONVERSION)
    assert few.variant("b").arm.units < MIN_UNITS_PER_ARM
    assert not metric.enough_data and metric.p_value is None and metric.low is None
    assert not metric.significant
    assert metric.verdict.startswith("b: not enough data yet on conversion")
    assert metric.variant_value is not None  # the raw rate is still shown
    full = analyse_units(world.outcomes, ["control", "b"])
    assert all(m.enough_data for m in full.variant("b").metrics)
    # Everyone converted in both arms: nothing to test, and said so.
    alike = analyse_units(UnitOutcomes(np.tile([0, 1], 500), np.ones(1_000)), ["control", "b"])
    flat = alike.variant("b").metric(Metric.CONVERSION)
    assert flat.p_value is None and not flat.significant
    assert (
        flat.verdict
        == "b: conversion does not vary between customers in either arm, so there is nothing to test"
    )


# --- sample ratio mismatch -----------------------------------------------------------------------


def test_srm_flags_a_52_48_split_of_20k_units_and_not_a_fair_one() -> None:
    skewed = sample_ratio([10_400, 9_600], [1.0, 1.0], ["control", "b"])
    assert skewed.flagged and skewed.p_value is not None and skewed.p_value < 1e-6
    assert skewed.statistic == pytest.approx(32.0)  # 2 * 400^2 / 10 000
    assert skewed.verdict.startswith("sample ratio mismatch (p < 0.001)")
    fair = sample_ratio(np.bincount(np.random.default_rng(5).random(20_000) < 0.5), [1.0, 1.0])
    assert not fair.flagged and fair.p_value is not None and fair.p_value > 0.01


def test_srm_through_the_real_assignment_and_design_weights() -> None:
    design = ExperimentDesign(
        ExperimentUnit.CUSTOMER,
        (
            Variant("control", Strategy.CONTROL, 2.0),
            Variant("b", Strategy.POPULAR),
            Variant("c", Strategy.SEGMENT_POPULAR),
        ),
    )
    names = [v.name for v in design.variants]
    arms = np.array([assign("exp-7", f"c{i}", design.variants).name for i in range(20_000)])
    rng = np.random.default_rng(0)
    outcomes = UnitOutcomes(arms, (rng.random(arms.size) < 0.1).astype(np.float64))
    fair = analyse_experiment(outcomes, design)
    assert not fair.sample_ratio.flagged
    assert fair.sample_ratio.expected == pytest.approx((10_000.0, 5_000.0, 5_000.0))
    assert fair.sample_ratio.observed == tuple(int((arms == n).sum()) for n in names)
    # Lose 8 % of b's units (a logging fault): flagged.
    keep = (arms != "b") | (rng.random(arms.size) > 0.08)
    lost = analyse_experiment(
        UnitOutcomes(arms[keep], outcomes.converted[keep]), design
    ).sample_ratio
    assert lost.flagged
    expected_p = stats.chisquare(lost.observed, np.array(lost.expected)).pvalue
    assert lost.p_value == pytest.approx(expected_p)


# --- Holm across variants x metrics ------------------------------------------------------------


def three_variant_outcomes() -> UnitOutcomes:
    """Control, b and c with 2 000 customers each and fixed counts (no randomness).

    Conversion: control 10 %, b 18 % (a clear win), c 13.95 % (raw always-valid p ≈ 0.021).
    b's churn is doubled (a harmed guardrail); c's churn (6.75 % against 5 %) and complaints
    (80 customers with one more) differ a little, so the raw p-values are not all tied at 1.
    """
    n = 2_000

    def ones(k: int) -> np.ndarray:
        x = np.zeros(n)
        x[:k] = 1
        return x

    impressions = np.tile(np.arange(1.0, 11.0), n // 10)
    clicks = np.tile([0.0, 1, 0, 2, 1, 0, 3, 0, 1, 2], n // 10)
    complaints = np.tile([0.0, 0, 1, 0, 0, 0, 0, 2, 0, 0], n // 10)
    more_complaints = complaints + ones(80)
    return UnitOutcomes(
        variant=np.repeat(["control", "b", "c"], n),
        converted=np.concatenate([ones(200), ones(360), ones(279)]),
        clicks=np.tile(clicks, 3),
        impressions=np.tile(impressions, 3),
        churned=np.concatenate([ones(100), ones(200), ones(135)]),
        complaints=np.concatenate([complaints, complaints, more_complaints]),
    )


def test_holm_over_three_variants_matches_statsmodels_and_takes_back_a_raw_win() -> None:
    result = analyse_units(three_variant_outcomes(), ["control", "b", "c"])
    tested = [m for v in result.variants for m in v.metrics]
    assert len(tested) == 8  # 2 variants x 4 metrics
    raw = [m.p_value for m in tested]
    assert all(p is not None for p in raw)
    reject, expected, _, _ = multipletests(raw, alpha=ALPHA, method="holm")
    assert [m.adjusted_p for m in tested] == pytest.approx(list(expected), rel=1e-12)
    assert [m.significant for m in tested] == list(reject)
    # c's conversion: significant alone, not after Holm.
    c_conversion = result.variant("c").metric(Metric.CONVERSION)
    assert c_conversion.p_value < ALPHA <= c_conversion.adjusted_p
    assert not c_conversion.significant
    assert c_conversion.verdict.endswith(": no significant difference")
    assert "Holm-adjusted p = " in c_conversion.verdict
    b = result.variant("b")
    assert b.metric(Metric.CONVERSION).significant and b.metric(Metric.CHURN).significant
    assert b.verdict.startswith("b converts 80.0 % better than control (Holm-adjusted p < 0.001")
    assert b.verdict.endswith("; guardrail harmed: churn")
    assert b.metric(Metric.CHURN).verdict.endswith(": significant, a guardrail is harmed")
    # Mid-way differences in p keep the step-down honest: not all ties at 1.
    assert len({round(p, 9) for p in raw}) >= 5


def test_holm_function_equals_statsmodels_on_random_p_values() -> None:
    rng = np.random.default_rng(11)
    for size in (1, 3, 8, 40):
        p = rng.random(size) ** 3
        p[: size // 3] = p[0]  # ties
        assert holm(p) == pytest.approx(multipletests(p, method="holm")[1], rel=1e-12)


def test_results_are_json_and_never_say_come_back_later() -> None:
    result = analyse_units(three_variant_outcomes(), ["control", "b", "c"])
    text = json.dumps(dataclasses.asdict(result))
    loaded = json.loads(text)
    assert loaded["variants"][1]["metrics"][0]["metric"] == "conversion"
    assert loaded["sample_ratio"]["flagged"] is False
    assert "safe to read at any time" in loaded["method"]
    verdicts = [v.verdict for v in result.variants] + [
        m.verdict for v in result.variants for m in v.metrics
    ]
    assert not any("more impressions" in v or "difference yet" in v for v in verdicts)


# --- the ratio metric's variance -----------------------------------------------------------------


def test_delta_method_ctr_variance_agrees_with_the_bootstrap_on_clustered_data() -> None:
    world = clustered_world(42, units=3_000)
    clicks = np.asarray(world.outcomes.clicks)
    impressions = np.asarray(world.outcomes.impressions)
    delta = ratio_variance(clicks, impressions)
    boot = stats.bootstrap(
        (clicks, impressions),
        lambda c, i, axis: c.sum(axis=axis) / i.sum(axis=axis),
        paired=True,
        vectorized=True,
        n_resamples=2_000,
        batch=500,
        rng=np.random.default_rng(0),
    )
    assert boot.standard_error**2 == pytest.approx(delta, rel=0.1)
    # Counting impressions as independent would understate it several times over.
    ctr = clicks.sum() / impressions.sum()
    assert delta > 2.5 * ctr * (1 - ctr) / impressions.sum()


# --- inputs -------------------------------------------------------------------------------------


def test_unknown_variant_and_ragged_columns_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown variant 'z'"):
        analyse_units(
            UnitOutcomes(np.array(["control", "z"]), np.array([0.0, 1.0])), ["control", "b"]
        )
    with pytest.raises(ValueError, match="converted has"):
        UnitOutcomes(np.array([0, 1]), np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="0 or 1"):
        UnitOutcomes(np.array([0, 1]), np.array([0.0, 2.0]))
    with pytest.raises(ValueError, match="together"):
        UnitOutcomes(np.array([0, 1]), np.array([0.0, 1.0]), clicks=np.array([1.0, 0.0]))
