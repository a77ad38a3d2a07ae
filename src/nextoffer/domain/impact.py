"""Treated vs control over exposed customers: rates per arm, differences with 95 % intervals."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import numpy as np

from nextoffer.domain.exposures import Arm

TREATED: Final = Arm.TREATED.value
CONTROL: Final = Arm.CONTROL.value
ARMS: Final = (TREATED, CONTROL)
NO_SEGMENT: Final = -1
"""The segment of an exposed customer the features job has not placed (yet)."""

CONFIDENCE: Final = 0.95
MIN_PER_ARM: Final = 30
"""Customers each arm needs, in a segment or overall, before any difference is shown.

Below it the normal approximations behind the intervals are poor and one customer moves a
rate by points; the row says "not enough data yet" instead of an interval to stare at.
"""
PROPORTION_METHOD: Final = "newcomb"
"""statsmodels' name of Newcombe's hybrid score interval (Wilson scores of each arm): it keeps
its coverage at rates near 0 (acquisition, churn) where the Wald interval shrinks to nothing."""
MEAN_METHOD: Final = "welch"
"""Welch's t interval (unequal variances): margin per customer is skewed and the arms differ
in size by design (a small control group)."""


@dataclass(frozen=True)
class CustomerOutcomes:
    """One row per exposed customer: arm, outcomes in the window after the first exposure.

    `arm` holds `treated` or `control`; `acquired` and `churned` 0/1; `margin` the offered
    products' margin acquired in the window, net of offer cost for the treated; `segment`
    the customer's segment id (`NO_SEGMENT` when none).
    """

    customer_id: np.ndarray
    arm: np.ndarray
    acquired: np.ndarray
    margin: np.ndarray
    churned: np.ndarray
    segment: np.ndarray

    def __post_init__(self) -> None:
        """Every column has one value per customer, and arms are known."""
        n = len(self.customer_id)
        for name in ("arm", "acquired", "margin", "churned", "segment"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"outcomes: {name} has {len(getattr(self, name))} rows, not {n}")
        unknown = set(np.unique(self.arm).tolist()) - set(ARMS)
        if unknown:
            raise ValueError(f"outcomes: unknown arms {sorted(unknown)}; arms are {ARMS}")

    def __len__(self) -> int:
        return len(self.customer_id)

    def subset(self, mask: np.ndarray) -> CustomerOutcomes:
        """The customers where `mask` is true."""
        return CustomerOutcomes(
            self.customer_id[mask],
            self.arm[mask],
            self.acquired[mask],
            self.margin[mask],
            self.churned[mask],
            self.segment[mask],
        )


@dataclass(frozen=True)
class ImpactPeriod:
    """Which exposures are compared: first exposures in [as_of - period, as_of - window].

    Only exposures whose window has closed by `as_of` (the data's clock) count, so every
    customer compared had the whole window to acquire or leave.
    """

    as_of: datetime
    window_days: int
    period_days: int

    def __post_init__(self) -> None:
        """The period must be longer than the window, or no exposure qualifies."""
        if self.window_days < 1 or self.period_days <= self.window_days:
            raise ValueError(
                f"impact: the period ({self.period_days} days) must be longer than the "
                f"window ({self.window_days} days)"
            )

    @property
    def exposed_from(self) -> datetime:
        """The earliest first exposure compared."""
        return self.as_of - timedelta(days=self.period_days)

    @property
    def exposed_to(self) -> datetime:
        """The latest first exposure compared: its window ends at `as_of`."""
        return self.as_of - timedelta(days=self.window_days)


@dataclass(frozen=True)
class ArmSummary:
    """One arm of a group: customers, acquisition, margin and churn."""

    customers: int
    acquired: int
    acquisition_rate: float | None
    margin_total: float
    margin_per_customer: float | None
    churned: int
    churn_rate: float | None


@dataclass(frozen=True)
class Difference:
    """Treated minus control for one metric, its 95 % interval, and what it means in words.

    `estimate`, `ci_low` and `ci_high` are None while either arm has too few customers
    (or, for margin, when it varied in neither arm: no interval can be drawn).
    """

    metric: str
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    method: str
    verdict: str

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies wholly above or below zero."""
        if self.ci_low is None or self.ci_high is None:
            return False
        return self.ci_low > 0 or self.ci_high < 0


@dataclass(frozen=True)
class GroupImpact:
    """Treated vs control within a group: everyone (`segment_id` None) or one segment."""

    label: str
    segment_id: int | None
    treated: ArmSummary
    control: ArmSummary
    enough_data: bool
    acquisition: Difference
    """Difference of acquisition rates, in rate units (0.01 = one percentage point)."""
    margin: Difference
    """Difference of mean margin per exposed customer, net of offer cost."""
    churn: Difference
    """Difference of churn rates (negative: fewer left with offers)."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GroupImpact:
        """Rebuilt from `dataclasses.asdict` output (after a JSON round trip)."""
        return cls(
            label=str(data["label"]),
            segment_id=None if data["segment_id"] is None else int(data["segment_id"]),
            treated=ArmSummary(**data["treated"]),
            control=ArmSummary(**data["control"]),
            enough_data=bool(data["enough_data"]),
            acquisition=Difference(**data["acquisition"]),
            margin=Difference(**data["margin"]),
            churn=Difference(**data["churn"]),
        )


@dataclass(frozen=True)
class ImpactMethods:
    """How each interval is computed (statsmodels' names)."""

    acquisition: str = PROPORTION_METHOD
    margin: str = MEAN_METHOD
    churn: str = PROPORTION_METHOD


@dataclass(frozen=True)
class ImpactReport:
    """One impact run: the period, the window, and treated vs control overall and per segment.

    Times are ISO 8601 text, so `dataclasses.asdict` is JSON as it stands and `from_json`
    rebuilds the same report from it.
    """

    as_of: str
    """The data's clock the run measured at: the end of every window compared."""
    exposed_from: str
    exposed_to: str
    window_days: int
    period_days: int
    computed_at: str
    confidence: float
    min_per_arm: int
    pending_customers: int
    """Customers first exposed after `exposed_to`: their window has not closed yet."""
    overall: GroupImpact
    segments: list[GroupImpact]
    methods: ImpactMethods = field(default_factory=ImpactMethods)

    @property
    def exposed_customers(self) -> int:
        """Customers compared, both arms."""
        return self.overall.treated.customers + self.overall.control.customers

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON values (`dataclasses.asdict`)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ImpactReport:
        """Rebuilt from `to_json` output (after a JSON round trip)."""
        return cls(
            as_of=str(data["as_of"]),
            exposed_from=str(data["exposed_from"]),
            exposed_to=str(data["exposed_to"]),
            window_days=int(data["window_days"]),
            period_days=int(data["period_days"]),
            computed_at=str(data["computed_at"]),
            confidence=float(data["confidence"]),
            min_per_arm=int(data["min_per_arm"]),
            pending_customers=int(data["pending_customers"]),
            overall=GroupImpact.from_json(data["overall"]),
            segments=[GroupImpact.from_json(s) for s in data["segments"]],
            methods=ImpactMethods(**data.get("methods", {})),
        )


def impact_report(
    outcomes: CustomerOutcomes,
    period: ImpactPeriod,
    computed_at: datetime,
    *,
    segment_names: Mapping[int, str] | None = None,
    pending_customers: int = 0,
    min_per_arm: int = MIN_PER_ARM,
) -> ImpactReport:
    """Treated vs control over `outcomes`, overall and per segment (ids ascending, none last)."""
    if min_per_arm < 2:
        raise ValueError("impact: min_per_arm must be at least 2 (a variance needs two values)")
    names = dict(segment_names or {})
    segments = sorted(
        {int(s) for s in np.unique(outcomes.segment).tolist()},
        key=lambda s: (s == NO_SEGMENT, s),
    )
    return ImpactReport(
        as_of=period.as_of.isoformat(),
        exposed_from=period.exposed_from.isoformat(),
        exposed_to=period.exposed_to.isoformat(),
        window_days=period.window_days,
        period_days=period.period_days,
        computed_at=computed_at.isoformat(),
        confidence=CONFIDENCE,
        min_per_arm=min_per_arm,
        pending_customers=pending_customers,
        overall=group_impact(outcomes, "all customers", None, min_per_arm),
        segments=[
            group_impact(
                outcomes.subset(outcomes.segment == s), _segment_label(s, names), s, min_per_arm
            )
            for s in segments
        ],
    )


def group_impact(
    outcomes: CustomerOutcomes, label: str, segment_id: int | None, min_per_arm: int = MIN_PER_ARM
) -> GroupImpact:
    """Treated vs control within one group of customers."""
    treated = outcomes.subset(outcomes.arm == TREATED)
    control = outcomes.subset(outcomes.arm == CONTROL)
    t, c = arm_summary(treated), arm_summary(control)
    enough = t.customers >= min_per_arm and c.customers >= min_per_arm
    if not enough:
        wait = _not_enough(t, c, min_per_arm)
        return GroupImpact(
            label,
            segment_id,
            t,
            c,
            False,
            Difference("acquisition_rate", None, None, None, PROPORTION_METHOD, wait),
            Difference("margin_per_customer", None, None, None, MEAN_METHOD, wait),
            Difference("churn_rate", None, None, None, PROPORTION_METHOD, wait),
        )
    return GroupImpact(
        label,
        segment_id,
        t,
        c,
        True,
        _acquisition(t, c),
        _margin(treated.margin.astype(float), control.margin.astype(float)),
        _churn(t, c),
    )


def arm_summary(arm: CustomerOutcomes) -> ArmSummary:
    """Counts, rates and margin of one arm's customers (rates None when it has none)."""
    n = len(arm)
    acquired = int(np.count_nonzero(arm.acquired))
    churned = int(np.count_nonzero(arm.churned))
    margin = float(np.sum(arm.margin, dtype=float))
    return ArmSummary(
        customers=n,
        acquired=acquired,
        acquisition_rate=acquired / n if n else None,
        margin_total=margin,
        margin_per_customer=margin / n if n else None,
        churned=churned,
        churn_rate=churned / n if n else None,
    )


def proportion_difference(
    x_treated: int, n_treated: int, x_control: int, n_control: int, confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
    """(difference, low, high) of two independent proportions: Newcombe's interval."""
    # Imported here: statsmodels pulls in pandas, which the serving process must not load.
    from statsmodels.stats.proportion import confint_proportions_2indep

    low, high = confint_proportions_2indep(
        x_treated,
        n_treated,
        x_control,
        n_control,
        method=PROPORTION_METHOD,
        compare="diff",
        alpha=1 - confidence,
    )
    return x_treated / n_treated - x_control / n_control, float(low), float(high)


def mean_difference(
    treated: np.ndarray, control: np.ndarray, confidence: float = CONFIDENCE
) -> tuple[float, float | None, float | None]:
    """(difference, low, high) of two means: Welch's t interval; bounds None without variance."""
    from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

    estimate = float(np.mean(treated) - np.mean(control))
    compare = CompareMeans(DescrStatsW(treated), DescrStatsW(control))
    # No variance in either arm (say, no one acquired anything) divides 0 by 0: no interval.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = compare.tconfint_diff(alpha=1 - confidence, usevar="unequal")
    if not (math.isfinite(low) and math.isfinite(high)):
        return estimate, None, None
    return estimate, float(low), float(high)


# --- verdicts -----------------------------------------------------------------------------


def _segment_label(segment: int, names: Mapping[int, str]) -> str:
    if segment == NO_SEGMENT:
        return "no segment"
    name = names.get(segment)
    return f"{segment} · {name}" if name else f"segment {segment}"


def _count(n: int) -> str:
    # Groups of three with spaces, as the experiments' verdicts write them.
    return f"{n:,}".replace(",", " ")


def _not_enough(t: ArmSummary, c: ArmSummary, needed: int) -> str:
    return (
        f"not enough data yet: {_count(t.customers)} treated and {_count(c.customers)} "
        f"control customers, {_count(needed)} of each needed"
    )


def _points(value: float) -> str:
    return f"{value * 100:+.1f}"


def _ci(low: float, high: float, show: Any) -> str:
    return f"95 % CI {show(low)} to {show(high)}"


def _acquisition(t: ArmSummary, c: ArmSummary) -> Difference:
    estimate, low, high = proportion_difference(t.acquired, t.customers, c.acquired, c.customers)
    interval = _ci(low, high, _points)
    if low > 0:
        verdict = f"offers raised acquisition by {abs(estimate) * 100:.1f} points ({interval})"
    elif high < 0:
        verdict = f"offers lowered acquisition by {abs(estimate) * 100:.1f} points ({interval})"
    else:
        verdict = (
            f"no clear difference in acquisition: {_points(estimate)} points "
            f"({interval} points, which includes zero)"
        )
    return Difference("acquisition_rate", estimate, low, high, PROPORTION_METHOD, verdict)


def _churn(t: ArmSummary, c: ArmSummary) -> Difference:
    estimate, low, high = proportion_difference(t.churned, t.customers, c.churned, c.customers)
    interval = _ci(low, high, _points)
    change = f"{abs(estimate) * 100:.1f} points"
    if high < 0:
        verdict = f"fewer customers left with offers: churn {change} lower ({interval})"
    elif low > 0:
        verdict = f"more customers left with offers: churn {change} higher ({interval})"
    else:
        verdict = (
            f"no clear difference in churn: {_points(estimate)} points "
            f"({interval} points, which includes zero)"
        )
    return Difference("churn_rate", estimate, low, high, PROPORTION_METHOD, verdict)


def _margin(treated: np.ndarray, control: np.ndarray) -> Difference:
    estimate, low, high = mean_difference(treated, control)
    if low is None or high is None:
        verdict = (
            f"margin did not vary within either arm ({estimate:+,.2f} per customer): "
            "no interval yet"
        )
    else:
        interval = _ci(low, high, lambda v: f"{v:+,.2f}")
        if low > 0:
            verdict = f"offers added {abs(estimate):,.2f} margin per customer ({interval})"
        elif high < 0:
            verdict = f"offers cost {abs(estimate):,.2f} margin per customer ({interval})"
        else:
            verdict = (
                f"no clear difference in margin: {estimate:+,.2f} per customer "
                f"({interval}, which includes zero)"
            )
    return Difference("margin_per_customer", estimate, low, high, MEAN_METHOD, verdict)
