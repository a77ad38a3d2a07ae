"""A/B experiments on offers: designs and sticky weighted assignment (results: experiment_stats)."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

MIN_VARIANTS: Final = 2
MAX_VARIANTS: Final = 10
CONTROL_NAME: Final = "control"
"""A variant with this name is the baseline, whatever its strategy."""

DEFAULT_ALPHA: Final = 0.05
"""Significance level of the results, after Holm (`domain.experiment_stats`)."""
DEFAULT_DETECTABLE_LIFT: Final = 0.10
"""The relative lift the always-valid test is tuned for (its mixing variance)."""

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
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
    """Nothing shown: the champion's answer is computed, withheld and logged in the exposure."""


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
