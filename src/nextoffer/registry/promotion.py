"""The promotion policy: when a new version becomes champion, hand promotions, rollback, pruning.

Pure code on the registry's records: no MLflow, no I/O. The MLflow adapter reads the state,
asks these functions what to do, and writes the answer back.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from nextoffer.domain.errors import RegistryError
from nextoffer.registry.protocol import (
    DECISION_NOT_PROMOTED,
    DECISION_PROMOTED,
    MODEL_KINDS,
    TAG_CHALLENGER_VALUE,
    TAG_CHAMPION_VALUE,
    TAG_CHAMPION_VERSION,
    TAG_DECISION,
    TAG_HIGHER_IS_BETTER,
    TAG_KIND,
    TAG_MARGIN,
    TAG_PRIMARY_METRIC,
    TAG_REASON,
    Decision,
    ModelVersionInfo,
)


def model_name(kind: str) -> str:
    """The registered model's name for a kind: `offers` → `nextoffer-offers`."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}: expected one of {', '.join(MODEL_KINDS)}")
    return f"nextoffer-{kind}"


def challenger_value(metrics: Mapping[str, float], primary_metric: str, margin: float) -> float:
    """The challenger's primary metric, after checking that a comparison can be made at all."""
    if primary_metric not in metrics:
        raise ValueError(f"primary metric {primary_metric!r} is not among the metrics")
    value = float(metrics[primary_metric])
    if not math.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be a finite number ≥ 0, got {margin}")
    return value


def decide(
    kind: str,
    version: int,
    champion: ModelVersionInfo | None,
    *,
    primary_metric: str,
    challenger_value: float,
    margin: float,
    higher_is_better: bool,
    champion_rescored: float | None = None,
    floor: float | None = None,
) -> Decision:
    """Whether a newly registered version replaces the champion.

    A degenerate challenger is never promoted, the first version included: a primary metric
    that is not a finite number, zero (higher is better), or not better than `floor` (a
    baseline such as popularity on the same test rows). `champion_rescored` is the
    champion's value on the challenger's own test data, measured in the same run; when
    given it is compared instead of the champion's recorded value (from other data).

    The challenger is promoted when there is no champion yet, or when its `primary_metric`
    is better than the champion's by more than `margin` × |champion value| (higher is
    better: value > champion + margin·|champion|; lower is better: value < champion −
    margin·|champion|). Equal values never promote.
    """

    def decision(promoted: bool, reason: str, champion_value: float | None) -> Decision:
        return Decision(
            kind=kind,
            version=version,
            promoted=promoted,
            reason=reason,
            champion_version=champion.version if champion is not None else None,
            primary_metric=primary_metric,
            challenger_value=challenger_value,
            champion_value=champion_value,
        )

    degenerate = _degenerate(challenger_value, primary_metric, floor, higher_is_better)
    if degenerate is not None:
        rescored = champion_rescored if champion is not None else None
        return decision(False, degenerate, rescored)
    if champion is None:
        return decision(True, "first version: there was no champion", None)
    champion_value = (
        champion_rescored if champion_rescored is not None else champion.metrics.get(primary_metric)
    )
    same_data = " on the same test data" if champion_rescored is not None else ""
    if champion_value is None or not math.isfinite(champion_value):
        # Comparing against nothing would promote blindly; a person has to decide.
        return decision(
            False,
            f"champion v{champion.version} has no {primary_metric} to compare with; "
            "promote by hand if this version should serve",
            None,
        )
    slack = margin * abs(champion_value)
    if higher_is_better:
        better = challenger_value > champion_value + slack
    else:
        better = challenger_value < champion_value - slack
    by = f" by more than {margin * 100:g} %" if margin > 0 else ""
    direction = "" if higher_is_better else " (lower is better)"
    verdict = "is better than" if better else "is not better than"
    reason = (
        f"{primary_metric} {challenger_value:.6g} {verdict} champion v{champion.version}'s "
        f"{champion_value:.6g}{same_data}{by}{direction}"
    )
    return decision(better, reason, champion_value)


def _degenerate(
    value: float, primary_metric: str, floor: float | None, higher_is_better: bool
) -> str | None:
    """Why a challenger's primary metric rules it out, or None when it does not."""
    if not math.isfinite(value):
        return f"degenerate: {primary_metric} is {value}; never promoted"
    if higher_is_better and value <= 0.0:
        return f"degenerate: {primary_metric} is {value:.6g} (nothing right); never promoted"
    if floor is not None and math.isfinite(floor):
        worse = value <= floor if higher_is_better else value >= floor
        if worse:
            return (
                f"degenerate: {primary_metric} {value:.6g} is no better than the baseline's "
                f"{floor:.6g} on the same test data; never promoted"
            )
    return None


def decision_tags(
    decision: Decision,
    *,
    margin: float,
    higher_is_better: bool,
    user_tags: Mapping[str, str],
) -> dict[str, str]:
    """The tags that record a registration decision on its version (the caller's tags too)."""
    tags = {
        **user_tags,
        TAG_KIND: decision.kind,
        TAG_DECISION: DECISION_PROMOTED if decision.promoted else DECISION_NOT_PROMOTED,
        TAG_REASON: decision.reason,
        TAG_PRIMARY_METRIC: decision.primary_metric,
        TAG_CHALLENGER_VALUE: repr(decision.challenger_value),
        TAG_MARGIN: repr(float(margin)),
        TAG_HIGHER_IS_BETTER: "true" if higher_is_better else "false",
    }
    if decision.champion_version is not None:
        tags[TAG_CHAMPION_VERSION] = str(decision.champion_version)
    if decision.champion_value is not None:
        tags[TAG_CHAMPION_VALUE] = repr(decision.champion_value)
    return tags


def promotion_reason(reason: str) -> str:
    """The recorded reason of a hand promotion; an empty reason is refused."""
    if not reason.strip():
        raise ValueError("a promotion needs a reason")
    return f"promoted by hand: {reason.strip()}"


def hand_promotion(
    target: ModelVersionInfo, current: ModelVersionInfo | None, reason: str
) -> Decision:
    """An operator's promotion of `target`; `promoted` is false when it already is champion."""
    name = model_name(target.kind)
    if target.artifacts_deleted:
        raise RegistryError(
            f"{name} v{target.version}: its artifacts were pruned, it cannot become the champion"
        )
    primary = target.tags.get(TAG_PRIMARY_METRIC, "")
    value = target.metrics.get(primary, math.nan)
    champion_value = current.metrics.get(primary) if current is not None and primary else None
    already = current is not None and current.version == target.version
    return Decision(
        kind=target.kind,
        version=target.version,
        promoted=not already,
        reason=f"v{target.version} is already the champion" if already else reason,
        champion_version=current.version if current is not None else None,
        primary_metric=primary,
        challenger_value=value,
        champion_value=champion_value,
    )


def rollback_target(kind: str, current: int | None, history: list[int]) -> tuple[int, list[int]]:
    """(the version to go back to, the champion history afterwards).

    The history is a stack: rolling back pops the current champion, so a second rollback
    goes one step further back instead of bouncing between two versions.
    """
    name = model_name(kind)
    if current is None:
        raise RegistryError(f"{name} has no champion to roll back from")
    stack = history_without_current(history, current)
    if not stack:
        raise RegistryError(
            f"{name}: v{current} is the only champion there has been; nothing to roll back to"
        )
    return stack[-1], stack


def rollback_decision(target: ModelVersionInfo, current: ModelVersionInfo) -> Decision:
    """The decision recorded for a rollback from `current` to `target`."""
    if target.artifacts_deleted:
        raise RegistryError(
            f"{model_name(target.kind)}: the previous champion v{target.version} was pruned; "
            "promote a version by hand"
        )
    primary = target.tags.get(TAG_PRIMARY_METRIC, "")
    return Decision(
        kind=target.kind,
        version=target.version,
        promoted=True,
        reason=f"rolled back from v{current.version} to v{target.version}",
        champion_version=current.version,
        primary_metric=primary,
        challenger_value=target.metrics.get(primary, math.nan),
        champion_value=current.metrics.get(primary) if primary else None,
    )


def parse_history(text: str) -> list[int]:
    """The champion history as stored in a tag: `1,3,4` → [1, 3, 4]; junk entries skipped."""
    return [int(part) for part in text.split(",") if part.strip().isdigit()]


def format_history(history: Iterable[int]) -> str:
    """The champion history as a tag value."""
    return ",".join(str(v) for v in history)


def history_without_current(history: list[int], current: int) -> list[int]:
    """The champions before the current one, oldest first (the rollback stack)."""
    stack = list(history)
    # The alias may have been moved outside nextoffer (MLflow UI); then the history's last
    # entry is not the current champion and is itself the one to go back to.
    while stack and stack[-1] == current:
        stack.pop()
    return stack


def versions_to_keep(
    newest_first: list[int], keep_versions: int, champion: int | None, history: list[int]
) -> set[int]:
    """Versions whose files pruning keeps: the newest few, the champion, the rollback target."""
    keep = set(newest_first[:keep_versions])
    if champion is not None:
        keep.add(champion)
        stack = history_without_current(history, champion)
        if stack:
            keep.add(stack[-1])
    return keep
