"""A/B experiment logic: design validation, sticky weighted assignment, hand-worked statistics."""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter

import pytest

from nextoffer.domain.experiments import (
    ExperimentDesign,
    ExperimentUnit,
    Strategy,
    Variant,
    VariantCounts,
    assign,
    assignment_point,
    sample_size_per_variant,
    two_proportion_test,
    variant_results,
    wilson_interval,
)

Z95 = 1.959963984540054  # z(0.975)
Z80 = 0.8416212335729143  # z(0.80)

# Wilson score interval, p = x/n, z = 1.96:
#   centre = (p + z²/2n) / (1 + z²/n)
#   half   = z / (1 + z²/n) * sqrt(p(1-p)/n + z²/4n²)
# 50/1000: p = 0.05, z² = 3.841459, z²/2n = 0.00192073, 1 + z²/n = 1.00384146
#   centre = 0.05192073 / 1.00384146 = 0.05172204
#   half   = 1.95246274 * sqrt(0.0000475 + 0.00000096036) = 1.95246274 * 0.00696135 = 0.01359178
WILSON_50_1000 = (0.0381303, 0.0653138)
# 0/20: low = 0, high = z² / (n + z²) = 3.841459 / 23.841459
WILSON_0_20_HIGH = 0.1611252
# 20/20: low = n / (n + z²) = 20 / 23.841459, high = 1
WILSON_20_20_LOW = 0.8388748

# Pooled two-proportion z-test, control 50/1000 accepts vs B 80/1000:
#   pooled = 130/2000 = 0.065
#   se = sqrt(0.065 * 0.935 * (1/1000 + 1/1000)) = sqrt(0.00012155) = 0.01102497
#   z  = (0.080 - 0.050) / 0.01102497 = 2.72110
#   p  = 2 * (1 - Φ(2.72110)) = erfc(2.72110 / √2) = 0.0065066
#   lift = (0.08 - 0.05) / 0.05 = 0.6
CONV_Z = 2.7210954
CONV_P = 0.0065066
# CTR, control 120/1000 clicks vs B 150/1000:
#   pooled = 270/2000 = 0.135, se = sqrt(0.135 * 0.865 * 0.002) = 0.01528234
#   z = 0.03 / 0.01528234 = 1.96305, p = 0.049640  (significant at 0.05, not at 0.01)
CTR_Z = 1.9630498
CTR_P = 0.0496404
# Control 50/1000 vs C 55/1000: pooled 0.0525, se = sqrt(0.0525 * 0.9475 * 0.002) = 0.00997434
#   z = 0.005 / 0.00997434 = 0.50129, p = 0.61617
SMALL_P = 0.6161697
# Sample size per variant, p1 = 0.05, p2 = 0.055 (10 % lift), p̄ = 0.0525, alpha 0.05, power 0.8:
#   n = (1.959964 * sqrt(2 * 0.0525 * 0.9475) + 0.841621 * sqrt(0.05 * 0.95 + 0.055 * 0.945))²
#       / 0.005²
#     = (1.959964 * 0.3154164 + 0.841621 * 0.3153966)² / 0.000025
#     = 0.8836546² / 0.000025 = 31233.44 -> 31 234
SAMPLE_SIZE_5PCT = 31234


def counts(
    name: str, impressions: int, clicks: int = 0, accepts: int = 0, declines: int = 0
) -> VariantCounts:
    return VariantCounts(name, impressions, clicks, accepts, declines, unique_customers=impressions)


# --- design validation ----------------------------------------------------------------------


def test_variant_accepts_a_valid_definition_and_coerces_strings() -> None:
    v = Variant("B-2_x", "model_version", 2, model_version=7)  # type: ignore[arg-type]
    assert v.strategy is Strategy.MODEL_VERSION
    assert v.weight == 2.0 and isinstance(v.weight, float)
    assert Variant("a" * 64, Strategy.POPULAR).weight == 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "", "strategy": Strategy.POPULAR}, "variant name"),
        ({"name": "a" * 65, "strategy": Strategy.POPULAR}, "variant name"),
        ({"name": "has space", "strategy": Strategy.POPULAR}, "variant name"),
        ({"name": "é", "strategy": Strategy.POPULAR}, "variant name"),
        ({"name": "b", "strategy": "best"}, "unknown strategy"),
        ({"name": "b", "strategy": Strategy.POPULAR, "weight": 0}, "weight must be > 0"),
        ({"name": "b", "strategy": Strategy.POPULAR, "weight": -1.0}, "weight must be > 0"),
        ({"name": "b", "strategy": Strategy.POPULAR, "weight": math.nan}, "weight must be > 0"),
        ({"name": "b", "strategy": Strategy.POPULAR, "weight": math.inf}, "weight must be > 0"),
        ({"name": "b", "strategy": Strategy.POPULAR, "weight": "1"}, "weight must be a number"),
        ({"name": "b", "strategy": Strategy.MODEL_VERSION}, "needs model_version"),
        ({"name": "b", "strategy": Strategy.MODEL_VERSION, "model_version": 0}, "needs"),
        ({"name": "b", "strategy": Strategy.MODEL_VERSION, "model_version": True}, "needs"),
        ({"name": "b", "strategy": Strategy.CHAMPION, "model_version": 3}, "only allowed"),
    ],
)
def test_variant_rejects_invalid_fields(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Variant(**kwargs)  # type: ignore[arg-type]


def test_design_needs_two_to_ten_uniquely_named_variants_and_a_known_unit() -> None:
    a, b = Variant("a", Strategy.CHAMPION), Variant("b", Strategy.POPULAR)
    design = ExperimentDesign("session", [a, b])  # type: ignore[arg-type]
    assert design.unit is ExperimentUnit.SESSION
    assert design.variants == (a, b)
    with pytest.raises(ValueError, match="2 to 10 variants, not 1"):
        ExperimentDesign(ExperimentUnit.CUSTOMER, (a,))
    many = tuple(Variant(f"v{i}", Strategy.POPULAR) for i in range(11))
    with pytest.raises(ValueError, match="not 11"):
        ExperimentDesign(ExperimentUnit.CUSTOMER, many)
    assert len(ExperimentDesign(ExperimentUnit.CUSTOMER, many[:10]).variants) == 10
    with pytest.raises(ValueError, match="'a' is used twice"):
        ExperimentDesign(ExperimentUnit.CUSTOMER, (a, b, Variant("a", Strategy.POPULAR)))
    with pytest.raises(ValueError, match="unit must be one of customer, session"):
        ExperimentDesign("household", (a, b))  # type: ignore[arg-type]


def test_control_variant_is_named_control_else_strategy_control_else_first() -> None:
    champion = Variant("champion", Strategy.CHAMPION)
    popular = Variant("popular", Strategy.POPULAR)
    holdout = Variant("holdout", Strategy.CONTROL)
    named = Variant("control", Strategy.POPULAR)
    unit = ExperimentUnit.CUSTOMER
    assert ExperimentDesign(unit, (holdout, champion, named)).control_variant is named
    assert ExperimentDesign(unit, (champion, holdout)).control_variant is holdout
    assert ExperimentDesign(unit, (popular, champion)).control_variant is popular


# --- assignment -----------------------------------------------------------------------------


def test_assignment_point_is_the_first_64_bits_of_sha256() -> None:
    # sha256("exp-1:C0001") starts b09b5cb2e00c7b16; as a fraction of 2^64: 0.68987...
    assert assignment_point("exp-1", "C0001") == pytest.approx(0xB09B5CB2E00C7B16 / 2**64)
    # sha256("exp-1:C0004") starts 0afe41e7c313bd86 -> 0.04294...
    assert assignment_point("exp-1", "C0004") == pytest.approx(0x0AFE41E7C313BD86 / 2**64)


def test_assignment_is_deterministic_and_follows_cumulative_weights() -> None:
    a, b = Variant("a", Strategy.CHAMPION, 1), Variant("b", Strategy.POPULAR, 3)
    # Total weight 4: a owns [0, 0.25), b owns [0.25, 1).
    assert assign("exp-1", "C0004", (a, b)) is a  # 0.043
    assert assign("exp-1", "C0002", (a, b)) is b  # 0.254
    assert assign("exp-1", "C0001", (a, b)) is b  # 0.690
    for unit in ("C0001", "C0002", "C0003", "C0004", "s-42"):
        first = assign("exp-1", unit, (a, b))
        assert all(assign("exp-1", unit, (a, b)) == first for _ in range(5))


def test_assignment_depends_on_the_experiment() -> None:
    a, b = Variant("a", Strategy.CHAMPION), Variant("b", Strategy.POPULAR)
    ids = [f"C{i:05d}" for i in range(200)]
    first = [assign("exp-1", u, (a, b)).name for u in ids]
    second = [assign("exp-2", u, (a, b)).name for u in ids]
    assert first != second


@pytest.mark.parametrize("weights", [(1.0, 1.0), (1.0, 2.0, 1.0), (0.1, 0.3, 0.6), (5.0, 95.0)])
def test_assignment_distribution_matches_weights(weights: tuple[float, ...]) -> None:
    variants = [Variant(f"v{i}", Strategy.POPULAR, w) for i, w in enumerate(weights)]
    n = 20_000
    seen = Counter(assign("exp-dist", f"C{i:06d}", variants).name for i in range(n))
    total = sum(weights)
    for variant in variants:
        share = variant.weight / total
        # 4 binomial standard deviations: at most 0.0142 of 20 000 for share 0.5.
        tolerance = 4 * math.sqrt(share * (1 - share) / n)
        assert seen[variant.name] / n == pytest.approx(share, abs=tolerance)


def test_assignment_of_no_variants_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        assign("exp-1", "C1", ())


# --- statistics -----------------------------------------------------------------------------


def test_wilson_interval_matches_hand_computed_values() -> None:
    p = wilson_interval(50, 1000)
    assert p.rate == 0.05
    assert (p.low, p.high) == pytest.approx(WILSON_50_1000, abs=1e-6)
    none = wilson_interval(0, 20)
    assert none.rate == 0 and none.low == 0
    assert none.high == pytest.approx(WILSON_0_20_HIGH, abs=1e-6)
    every = wilson_interval(20, 20)
    assert every.rate == 1 and every.high == 1
    assert every.low == pytest.approx(WILSON_20_20_LOW, abs=1e-6)
    empty = wilson_interval(0, 0)
    assert (empty.rate, empty.low, empty.high) == (None, None, None)


def test_wilson_caps_successes_at_trials() -> None:
    over = wilson_interval(25, 20)
    assert over.successes == 25 and over.rate == 1
    assert over.low == pytest.approx(WILSON_20_20_LOW, abs=1e-6)


def test_two_proportion_test_matches_hand_computed_values() -> None:
    test = two_proportion_test(50, 1000, 80, 1000)
    assert test.z == pytest.approx(CONV_Z, abs=1e-4)
    assert test.p_value == pytest.approx(CONV_P, abs=1e-5)
    assert test.lift == pytest.approx(0.6)
    assert test.difference == pytest.approx(0.03)
    assert test.significant
    reverse = two_proportion_test(80, 1000, 50, 1000)
    assert reverse.z == pytest.approx(-CONV_Z, abs=1e-4)
    assert reverse.p_value == pytest.approx(CONV_P, abs=1e-5)
    assert reverse.lift == pytest.approx(-0.375)


def test_two_proportion_test_is_undefined_without_variance_or_impressions() -> None:
    for args in [(0, 100, 0, 100), (100, 100, 100, 100), (0, 0, 5, 100), (5, 100, 0, 0)]:
        test = two_proportion_test(*args)
        assert test.z is None and test.p_value is None and not test.significant
    # Control at 0 %, variant above: testable, but no relative lift.
    from_zero = two_proportion_test(0, 1000, 10, 1000)
    assert from_zero.lift is None and from_zero.p_value is not None


def test_sample_size_matches_the_standard_formula() -> None:
    assert sample_size_per_variant(0.05) == SAMPLE_SIZE_5PCT
    assert sample_size_per_variant(0.0) is None
    assert sample_size_per_variant(0.95) is None  # a 10 % lift would pass 100 %


def test_variant_results_hand_computed_example() -> None:
    results = variant_results(
        [
            counts("control", 1000, clicks=120, accepts=50, declines=30),
            counts("B", 1000, clicks=150, accepts=80, declines=20),
            counts("C", 1000, clicks=120, accepts=55),
        ],
        control="control",
    )
    assert results.control == "control"
    assert results.impressions_per_variant_needed == SAMPLE_SIZE_5PCT

    base = results.variant("control")
    assert base.is_control and base.conversion_vs_control is None and base.ctr_vs_control is None
    assert base.ctr.rate == pytest.approx(0.12)
    assert base.conversion.rate == pytest.approx(0.05)
    assert (base.conversion.low, base.conversion.high) == pytest.approx(WILSON_50_1000, abs=1e-6)
    assert base.verdict == "control is the baseline: converts at 5.0 % over 1 000 impressions"

    b = results.variant("B")
    assert not b.is_control and b.declines == 20 and b.unique_customers == 1000
    assert b.conversion.rate == pytest.approx(0.08)
    assert b.ctr.rate == pytest.approx(0.15)
    assert b.conversion_vs_control is not None and b.ctr_vs_control is not None
    assert b.conversion_vs_control.p_value == pytest.approx(CONV_P, abs=1e-5)
    assert b.conversion_vs_control.lift == pytest.approx(0.6)
    assert b.conversion_vs_control.significant
    assert b.ctr_vs_control.z == pytest.approx(CTR_Z, abs=1e-4)
    assert b.ctr_vs_control.p_value == pytest.approx(CTR_P, abs=1e-5)
    assert b.ctr_vs_control.lift == pytest.approx(0.25)
    assert b.ctr_vs_control.significant
    assert b.verdict == "B converts 60.0 % better than control (p = 0.0065): significant"

    c = results.variant("C")
    assert c.conversion_vs_control is not None
    assert c.conversion_vs_control.p_value == pytest.approx(SMALL_P, abs=1e-5)
    assert not c.conversion_vs_control.significant
    assert c.more_impressions_needed == SAMPLE_SIZE_5PCT - 1000
    assert c.verdict == (
        "C converts 10.0 % better than control (p = 0.62): no significant difference yet; "
        "30 234 more impressions per variant would detect a 10 % lift"
    )


def test_alpha_decides_significance() -> None:
    data = [counts("A", 1000, clicks=120), counts("B", 1000, clicks=150)]
    loose = variant_results(data, "A", alpha=0.05).variant("B").ctr_vs_control
    strict = variant_results(data, "A", alpha=0.01).variant("B").ctr_vs_control
    assert loose is not None and strict is not None
    assert loose.p_value == strict.p_value == pytest.approx(CTR_P, abs=1e-5)
    assert loose.significant and not strict.significant


def test_worse_variant_and_enough_impressions_verdicts() -> None:
    worse = variant_results(
        [counts("control", 1000, accepts=80), counts("B", 1000, accepts=50)], "control"
    )
    assert worse.variant("B").verdict == (
        "B converts 37.5 % worse than control (p = 0.0065): significant"
    )
    big = variant_results(
        [counts("control", 40_000, accepts=2000), counts("B", 40_000, accepts=2010)], "control"
    )
    b = big.variant("B")
    assert b.more_impressions_needed == 0
    assert "no significant difference; enough impressions to detect a 10 % lift" in b.verdict


def test_zero_impressions_zero_and_all_conversions_do_not_crash() -> None:
    results = variant_results(
        [
            counts("control", 0),
            counts("B", 100, clicks=100, accepts=100),
            counts("C", 0),
        ],
        control="control",
    )
    base = results.variant("control")
    assert base.ctr.rate is None and base.conversion.low is None
    assert base.verdict == "control is the baseline; no impressions yet"
    assert results.impressions_per_variant_needed is None
    b = results.variant("B")
    assert b.conversion.rate == 1.0 and b.conversion.high == 1.0
    assert b.conversion_vs_control is not None
    assert b.conversion_vs_control.p_value is None and b.conversion_vs_control.lift is None
    assert b.verdict == "B: control has no impressions yet, nothing to compare with"
    assert results.variant("C").verdict == "C: no impressions yet"

    zeros = variant_results([counts("A", 500), counts("B", 500)], control="A")
    b = zeros.variant("B")
    assert b.conversion.rate == 0.0 and b.conversion.low == 0.0
    assert b.conversion_vs_control is not None and b.conversion_vs_control.p_value is None
    assert b.verdict == "B and A both convert at 0.0 %: no difference to test yet"
    assert zeros.impressions_per_variant_needed is None

    # pooled = 10/2000 = 0.005, se = sqrt(0.005 * 0.995 * 0.002) = 0.00315436,
    # z = 0.01 / 0.00315436 = 3.17021, p = erfc(3.17021 / √2) = 0.0015233
    from_zero = variant_results([counts("A", 1000), counts("B", 1000, accepts=10)], "A")
    assert from_zero.variant("B").verdict == (
        "B converts at 1.0 % against 0.0 % for A (p = 0.0015): significant"
    )


def test_results_serialise_to_json_without_nan() -> None:
    results = variant_results(
        [counts("control", 0), counts("B", 1000, clicks=3, accepts=1), counts("C", 10)],
        control="control",
    )
    text = json.dumps(dataclasses.asdict(results), allow_nan=False)
    again = json.loads(text)
    assert again["control"] == "control"
    assert [v["variant"] for v in again["variants"]] == ["control", "B", "C"]
    assert again["variants"][0]["conversion"]["rate"] is None


def test_variant_results_rejects_bad_input() -> None:
    data = [counts("A", 10), counts("B", 10)]
    with pytest.raises(ValueError, match="control variant 'Z' has no counts"):
        variant_results(data, "Z")
    with pytest.raises(ValueError, match="twice"):
        variant_results([*data, counts("A", 3)], "A")
    with pytest.raises(ValueError, match="alpha"):
        variant_results(data, "A", alpha=0)
    with pytest.raises(ValueError, match="impressions must be >= 0"):
        VariantCounts("A", impressions=-1)
