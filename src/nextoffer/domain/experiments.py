"""A/B experiments on offers: designs, sticky weighted assignment, and significance tests."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from statistics import NormalDist
from typing import Final

MIN_VARIANTS: Final = 2
MAX_VARIANTS: Final = 10
CONTROL_NAME: Final = "control"
"""A variant with this name is the baseline, whatever its strategy."""

DEFAULT_ALPHA: Final = 0.05
DEFAULT_CONFIDENCE: Final = 0.95
DEFAULT_POWER: Final = 0.80
DEFAULT_DETECTABLE_LIFT: Final = 0.10
"""The relative conversion lift the sample-size hint in verdicts is sized for."""

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_STANDARD_NORMAL = NormalDist()
# 53 bits fill a double's mantissa exactly: the uniform draw is never rounded up to 1.0.
_UNIFORM_BITS: Final = 53


class Strategy(StrEnum):
    """How a variant answers an offers request."""

    CHAMPION = "champion"
    """The offers model that currently holds the champion alias."""
    MODEL_VERSION = "model_version"
    """One registered offers model version, named by the variant's `model_version`."""
    SEGMENT_POPULAR = "segment_popular"
    """The most popular products within the customer's segment."""
    POPULAR = "popular"
    """The most popular products overall."""
    CONTROL = "control"
    """No model offer at all: the answer is an empty list."""


class ExperimentUnit(StrEnum):
    """What is randomised: a customer keeps one variant for good, a session only for itself."""

    CUSTOMER = "customer"
    SESSION = "session"


class ExperimentStatus(StrEnum):
    """Whether an experiment still assigns variants."""

    RUNNING = "running"
    STOPPED = "stopped"


def parse_unit(value: ExperimentUnit | str) -> ExperimentUnit:
    """The unit named by `value`; ValueError naming the allowed units otherwise."""
    try:
        return ExperimentUnit(value)
    except ValueError:
        allowed = ", ".join(u.value for u in ExperimentUnit)
        raise ValueError(f"unit must be one of {allowed}, not {value!r}") from None


@dataclass(frozen=True)
class Variant:
    """One arm of an experiment: a name, how it answers, and its share of traffic (by weight)."""

    name: str
    strategy: Strategy
    weight: float = 1.0
    model_version: int | None = None

    def __post_init__(self) -> None:
        """Check the fields; a string strategy (as stored in JSON) is turned into a `Strategy`."""
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(f"variant name {self.name!r}: use 1 to 64 letters, digits, '_' or '-'")
        try:
            strategy = Strategy(self.strategy)
        except ValueError:
            allowed = ", ".join(s.value for s in Strategy)
            raise ValueError(
                f"variant {self.name!r}: unknown strategy {self.strategy!r} (one of {allowed})"
            ) from None
        object.__setattr__(self, "strategy", strategy)
        if isinstance(self.weight, bool) or not isinstance(self.weight, int | float):
            raise ValueError(f"variant {self.name!r}: weight must be a number, not {self.weight!r}")
        weight = float(self.weight)
        if not math.isfinite(weight) or weight <= 0:
            raise ValueError(f"variant {self.name!r}: weight must be > 0, not {self.weight!r}")
        object.__setattr__(self, "weight", weight)
        if strategy is Strategy.MODEL_VERSION:
            version = self.model_version
            if isinstance(version, bool) or not isinstance(version, int) or version < 1:
                raise ValueError(
                    f"variant {self.name!r}: strategy model_version needs model_version, "
                    f"a registered version number >= 1 (got {version!r})"
                )
        elif self.model_version is not None:
            raise ValueError(
                f"variant {self.name!r}: model_version is only allowed with strategy "
                f"model_version, not {strategy.value}"
            )


@dataclass(frozen=True)
class ExperimentDesign:
    """What an experiment randomises and between which variants; validated on construction."""

    unit: ExperimentUnit
    variants: tuple[Variant, ...]

    def __post_init__(self) -> None:
        """Check unit, variant count and unique names; lists become tuples to stay frozen."""
        object.__setattr__(self, "unit", parse_unit(self.unit))
        variants = tuple(self.variants)
        if not all(isinstance(v, Variant) for v in variants):
            raise ValueError("variants must be Variant records")
        if not MIN_VARIANTS <= len(variants) <= MAX_VARIANTS:
            raise ValueError(
                f"an experiment needs {MIN_VARIANTS} to {MAX_VARIANTS} variants, "
                f"not {len(variants)}"
            )
        seen: set[str] = set()
        for variant in variants:
            if variant.name in seen:
                raise ValueError(f"variant name {variant.name!r} is used twice")
            seen.add(variant.name)
        object.__setattr__(self, "variants", variants)

    @property
    def control_variant(self) -> Variant:
        """The baseline the others are compared with.

        The variant named "control", else the first with strategy control, else the first.
        """
        for variant in self.variants:
            if variant.name == CONTROL_NAME:
                return variant
        for variant in self.variants:
            if variant.strategy is Strategy.CONTROL:
                return variant
        return self.variants[0]

    def variant(self, name: str) -> Variant:
        """The variant called `name`; KeyError when there is none."""
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise KeyError(name)


def assignment_point(experiment_id: str, unit_id: str) -> float:
    """Where a unit falls in [0, 1) for an experiment: SHA-256 of "experiment_id:unit_id"."""
    digest = hashlib.sha256(f"{experiment_id}:{unit_id}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> (64 - _UNIFORM_BITS)) / (1 << _UNIFORM_BITS)


def assign(experiment_id: str, unit_id: str, variants: Sequence[Variant]) -> Variant:
    """The variant a unit gets: deterministic, so sticky without storing it, and weighted.

    The unit's point in [0, 1) is scaled by the total weight and the first variant whose
    cumulative weight exceeds it wins. Reordering variants or changing weights reshuffles
    units, so a running experiment's variants must not change.
    """
    if not variants:
        raise ValueError("cannot assign a unit to an empty list of variants")
    total = math.fsum(v.weight for v in variants)
    target = assignment_point(experiment_id, unit_id) * total
    cumulative = 0.0
    for variant in variants:
        cumulative += variant.weight
        if target < cumulative:
            return variant
    # Rounding in the running sum can leave a point just above the last bound.
    return variants[-1]


@dataclass(frozen=True)
class VariantCounts:
    """Offer events counted for one variant of an experiment."""

    variant: str
    impressions: int = 0
    clicks: int = 0
    accepts: int = 0
    declines: int = 0
    unique_customers: int = 0

    def __post_init__(self) -> None:
        """Counts are never negative."""
        for label in ("impressions", "clicks", "accepts", "declines", "unique_customers"):
            if getattr(self, label) < 0:
                raise ValueError(f"variant {self.variant!r}: {label} must be >= 0")


@dataclass(frozen=True)
class Proportion:
    """An observed rate with its Wilson score interval; all None when nothing was shown."""

    successes: int
    trials: int
    rate: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True)
class Comparison:
    """A variant's rate against the control's: pooled two-proportion z-test, two-sided.

    `z` and `p_value` are None when the test is undefined: an arm with no impressions, or
    both arms at 0 % or both at 100 % (no variance to test against).
    """

    lift: float | None
    """Relative lift, (variant - control) / control; None when the control's rate is 0."""
    difference: float | None
    """Absolute difference of the rates, variant - control."""
    z: float | None
    p_value: float | None
    significant: bool


@dataclass(frozen=True)
class VariantResult:
    """One variant's counts, rates, tests against the control, and a verdict in words."""

    variant: str
    is_control: bool
    impressions: int
    clicks: int
    accepts: int
    declines: int
    unique_customers: int
    ctr: Proportion
    """Clicks per impression."""
    conversion: Proportion
    """Accepts per impression."""
    ctr_vs_control: Comparison | None
    """None for the control itself."""
    conversion_vs_control: Comparison | None
    """None for the control itself."""
    more_impressions_needed: int | None
    """Impressions still to show per variant to detect the target lift; None if unknown."""
    verdict: str


@dataclass(frozen=True)
class ExperimentResults:
    """Every variant's results against the control; `dataclasses.asdict` gives JSON-able values."""

    control: str
    alpha: float
    confidence: float
    power: float
    detectable_lift: float
    impressions_per_variant_needed: int | None
    """Per variant, for `power` to detect a `detectable_lift` relative conversion lift at the
    control's conversion rate, two-sided at `alpha`; None while the control has no conversions."""
    variants: tuple[VariantResult, ...]

    def variant(self, name: str) -> VariantResult:
        """The result of the variant called `name`; KeyError when there is none."""
        for result in self.variants:
            if result.variant == name:
                return result
        raise KeyError(name)


def wilson_interval(
    successes: int, trials: int, confidence: float = DEFAULT_CONFIDENCE
) -> Proportion:
    """The observed rate and its Wilson score interval; rate and bounds None when trials is 0."""
    if trials < 0 or successes < 0:
        raise ValueError("successes and trials must be >= 0")
    if trials == 0:
        return Proportion(successes, trials, None, None, None)
    # Events are posted by clients: an accept whose impression was lost can outnumber the
    # impressions, and a rate above 1 has no meaning, so the rate is capped at 1.
    x = min(successes, trials)
    n = trials
    z = _z_two_sided(1 - confidence)
    p = x / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # At 0 and at n the bounds are exactly 0 and 1; centre -/+ half only reaches them to rounding.
    low = 0.0 if x == 0 else max(0.0, centre - half)
    high = 1.0 if x == n else min(1.0, centre + half)
    return Proportion(successes, trials, p, low, high)


def two_proportion_test(
    x_control: int, n_control: int, x_variant: int, n_variant: int, alpha: float = DEFAULT_ALPHA
) -> Comparison:
    """Pooled two-proportion z-test of the variant's rate against the control's, two-sided."""
    if n_control <= 0 or n_variant <= 0:
        return Comparison(None, None, None, None, significant=False)
    x_control = min(x_control, n_control)
    x_variant = min(x_variant, n_variant)
    p_control = x_control / n_control
    p_variant = x_variant / n_variant
    difference = p_variant - p_control
    lift = difference / p_control if p_control > 0 else None
    pooled = (x_control + x_variant) / (n_control + n_variant)
    variance = pooled * (1 - pooled) * (1 / n_control + 1 / n_variant)
    if variance <= 0:
        return Comparison(lift, difference, None, None, significant=False)
    z = difference / math.sqrt(variance)
    # erfc keeps precision far into the tail, where 1 - cdf(z) would round to 0.
    p_value = math.erfc(abs(z) / math.sqrt(2))
    return Comparison(lift, difference, z, p_value, significant=p_value < alpha)


def sample_size_per_variant(
    baseline: float,
    relative_lift: float = DEFAULT_DETECTABLE_LIFT,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
) -> int | None:
    """Impressions per variant to detect `relative_lift` over `baseline` (two-sided z-test).

    The standard formula, with p1 = baseline, p2 = baseline * (1 + lift), p = (p1 + p2) / 2:
    n = (z(1-alpha/2) * sqrt(2 p (1-p)) + z(power) * sqrt(p1 (1-p1) + p2 (1-p2)))^2 / (p2-p1)^2.
    None when it cannot be sized: a baseline of 0 or a target rate outside (0, 1).
    """
    p1 = baseline
    p2 = baseline * (1 + relative_lift)
    if not (0 < p1 < 1 and 0 < p2 < 1) or p1 == p2:
        return None
    p_mean = (p1 + p2) / 2
    z_alpha = _z_two_sided(alpha)
    z_power = _STANDARD_NORMAL.inv_cdf(power)
    root = z_alpha * math.sqrt(2 * p_mean * (1 - p_mean)) + z_power * math.sqrt(
        p1 * (1 - p1) + p2 * (1 - p2)
    )
    return math.ceil(root * root / ((p2 - p1) ** 2))


def variant_results(
    counts: Sequence[VariantCounts],
    control: str,
    alpha: float = DEFAULT_ALPHA,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    power: float = DEFAULT_POWER,
    detectable_lift: float = DEFAULT_DETECTABLE_LIFT,
) -> ExperimentResults:
    """Rates with Wilson intervals for every variant and z-tests of each against `control`."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), not {alpha!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), not {confidence!r}")
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), not {power!r}")
    names = [c.variant for c in counts]
    if len(set(names)) != len(names):
        raise ValueError(f"variant counts name a variant twice: {names}")
    by_name = {c.variant: c for c in counts}
    if control not in by_name:
        raise ValueError(f"control variant {control!r} has no counts (variants: {names})")
    base = by_name[control]
    base_conversion = wilson_interval(base.accepts, base.impressions, confidence)
    needed = (
        sample_size_per_variant(base_conversion.rate, detectable_lift, alpha, power)
        if base_conversion.rate is not None
        else None
    )
    results = []
    for c in counts:
        ctr = wilson_interval(c.clicks, c.impressions, confidence)
        conversion = wilson_interval(c.accepts, c.impressions, confidence)
        if c.variant == control:
            ctr_test = conversion_test = None
            more = None
            verdict = _control_verdict(c, conversion)
        else:
            ctr_test = two_proportion_test(
                base.clicks, base.impressions, c.clicks, c.impressions, alpha
            )
            conversion_test = two_proportion_test(
                base.accepts, base.impressions, c.accepts, c.impressions, alpha
            )
            more = (
                max(0, needed - min(base.impressions, c.impressions))
                if needed is not None
                else None
            )
            verdict = _verdict(
                c, base, conversion, base_conversion, conversion_test, more, detectable_lift
            )
        results.append(
            VariantResult(
                variant=c.variant,
                is_control=c.variant == control,
                impressions=c.impressions,
                clicks=c.clicks,
                accepts=c.accepts,
                declines=c.declines,
                unique_customers=c.unique_customers,
                ctr=ctr,
                conversion=conversion,
                ctr_vs_control=ctr_test,
                conversion_vs_control=conversion_test,
                more_impressions_needed=more,
                verdict=verdict,
            )
        )
    return ExperimentResults(
        control=control,
        alpha=alpha,
        confidence=confidence,
        power=power,
        detectable_lift=detectable_lift,
        impressions_per_variant_needed=needed,
        variants=tuple(results),
    )


def _z_two_sided(alpha: float) -> float:
    return _STANDARD_NORMAL.inv_cdf(1 - alpha / 2)


def _count(n: int) -> str:
    # Thin groups of three with spaces, as in "1 234": unambiguous in every locale.
    return f"{n:,}".replace(",", " ")


def _percent(rate: float) -> str:
    return f"{rate * 100:.1f} %"


def _p(p_value: float) -> str:
    return "p < 0.001" if p_value < 0.001 else f"p = {p_value:.2g}"


def _control_verdict(counts: VariantCounts, conversion: Proportion) -> str:
    if conversion.rate is None:
        return f"{counts.variant} is the baseline; no impressions yet"
    return (
        f"{counts.variant} is the baseline: converts at {_percent(conversion.rate)} "
        f"over {_count(counts.impressions)} impressions"
    )


def _verdict(
    counts: VariantCounts,
    base: VariantCounts,
    conversion: Proportion,
    base_conversion: Proportion,
    test: Comparison,
    more: int | None,
    detectable_lift: float,
) -> str:
    name, control = counts.variant, base.variant
    if conversion.rate is None:
        return f"{name}: no impressions yet"
    if base_conversion.rate is None:
        return f"{name}: {control} has no impressions yet, nothing to compare with"
    if test.p_value is None:
        return (
            f"{name} and {control} both convert at {_percent(conversion.rate)}: "
            "no difference to test yet"
        )
    if test.lift is None:
        how = (
            f"{name} converts at {_percent(conversion.rate)} against "
            f"{_percent(base_conversion.rate)} for {control}"
        )
    elif test.lift == 0:
        how = f"{name} converts the same as {control}"
    else:
        direction = "better" if test.lift > 0 else "worse"
        how = f"{name} converts {_percent(abs(test.lift))} {direction} than {control}"
    if test.significant:
        return f"{how} ({_p(test.p_value)}): significant"
    lift = f"{detectable_lift * 100:.0f} %"
    if more == 0:
        return (
            f"{how} ({_p(test.p_value)}): no significant difference; enough impressions to "
            f"detect a {lift} lift, so any real difference is likely smaller"
        )
    verdict = f"{how} ({_p(test.p_value)}): no significant difference yet"
    if more is None:
        return verdict
    return f"{verdict}; {_count(more)} more impressions per variant would detect a {lift} lift"
