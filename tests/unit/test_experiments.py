"""A/B experiment logic: design validation and sticky weighted assignment."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from nextoffer.domain.experiments import (
    ExperimentDesign,
    ExperimentUnit,
    Strategy,
    Variant,
    assign,
    assignment_point,
)

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
