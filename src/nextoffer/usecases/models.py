"""Choose which model serves: promote a version to champion, or roll back to the previous one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nextoffer.domain.audit import Action, Actor
from nextoffer.domain.fingerprint import mismatches, parse_fingerprint
from nextoffer.registry.protocol import TAG_DATA_FINGERPRINT, ModelVersionInfo
from nextoffer.serving.audit import AuditTrail
from nextoffer.store.reads.fingerprint import data_fingerprint
from nextoffer.usecases.context import Services

if TYPE_CHECKING:
    from nextoffer.registry.mlflow_registry import Decision


def promote_model(
    services: Services,
    kind: str,
    version: int,
    reason: str,
    by: str,
    *,
    actor: Actor | None = None,
) -> Decision:
    """Point `kind`'s champion alias at `version`; serving picks it up at once.

    With an `actor`, the promotion goes into the audit trail.
    """
    decision = services.registry.promote(kind, version, f"{reason} (by {by})")
    _serve_new_champion(services)
    if actor is not None:
        audit_decision(services.audit, actor, Action.MODEL_PROMOTE, decision)
    return decision


def roll_back_model(services: Services, kind: str, *, actor: Actor | None = None) -> Decision:
    """Point `kind`'s champion alias back at the previous champion (audited with an `actor`)."""
    decision = services.registry.rollback(kind)
    _serve_new_champion(services)
    if actor is not None:
        audit_decision(services.audit, actor, Action.MODEL_ROLLBACK, decision)
    return decision


def audit_decision(
    trail: AuditTrail, actor: Actor, action: Action, decision: Decision, *, at_once: bool = False
) -> None:
    """Record a promotion or rollback: the model version it made champion, and why."""
    trail.change(
        actor,
        action,
        f"{decision.kind} v{decision.version}",
        detail={"promoted": decision.promoted, "reason": decision.reason},
        at_once=at_once,
    )


def _serve_new_champion(services: Services) -> None:
    # This process reloads now; other replicas see the new stamp on their next refresh.
    services.state.refresh()
    services.offers.invalidate()


def data_mismatches(services: Services, versions: list[ModelVersionInfo]) -> dict[int, list[str]]:
    """Per version: how its training data differs from the data in the database now."""
    current = data_fingerprint(services.engine)
    return {
        v.version: mismatches(parse_fingerprint(v.tags.get(TAG_DATA_FINGERPRINT)), current)
        for v in versions
    }
