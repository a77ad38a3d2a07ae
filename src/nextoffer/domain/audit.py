"""The audit trail's vocabulary: who acted (an `Actor`), and one `AuditEntry` of what they did."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from nextoffer.domain.errors import InvalidRequestError

ADDRESS_LEN: Final = 64
"""Longest client address kept (an IPv6 address with a zone fits)."""
ACTOR_LEN: Final = 100
TARGET_LEN: Final = 200
ACTOR_KINDS: Final = ("key", "user", "cli")
_AGO = re.compile(r"(\d+)\s*([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class Action(StrEnum):
    """What an audit entry records: a read of one customer's data, or a change."""

    CUSTOMER_READ = "customer.read"
    """A request that showed one customer's data (offers, churn risk, segment, 360 page)."""
    CUSTOMER_CHANGE = "customer.change"
    """A request that changed one customer's data (consent, responses, erasure via HTTP)."""
    MODEL_PROMOTE = "model.promote"
    MODEL_ROLLBACK = "model.rollback"
    EXPERIMENT_START = "experiment.start"
    EXPERIMENT_STOP = "experiment.stop"
    KEY_CREATE = "key.create"
    KEY_REVOKE = "key.revoke"
    USER_CREATE = "user.create"
    USER_DISABLE = "user.disable"
    CONSENT_CHANGE = "consent.change"
    CUSTOMER_ERASE = "customer.erase"
    CAMPAIGN_EXPORT = "campaign.export"


@dataclass(frozen=True)
class Actor:
    """Who acts and from where: an API key, a console or API user, or the command line.

    `kind` is `key` (id = key id), `user` (id = username) or `cli` (id = the operating
    system's user); `address` is the client's address (a host name for the command line).
    """

    kind: str
    id: str
    address: str | None = None
    request_id: str | None = None

    @property
    def label(self) -> str:
        """`kind:id`, as logs and the console show it."""
        return f"{self.kind}:{self.id}"


@dataclass(frozen=True)
class AuditEntry:
    """One row of the append-only `audit` table; a customer appears only as a digest."""

    actor_kind: str
    actor_id: str
    action: str
    target: str | None = None
    customer_digest: str | None = None
    address: str | None = None
    request_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    """Unique per entry, so a replayed spool stores an entry once."""

    @classmethod
    def of(
        cls,
        actor: Actor,
        action: Action | str,
        target: str | None = None,
        *,
        customer_digest: str | None = None,
        detail: dict[str, Any] | None = None,
        at: datetime | None = None,
    ) -> AuditEntry:
        """An entry of `actor` doing `action` to `target`, cut to the columns' lengths."""
        return cls(
            actor_kind=actor.kind[:16],
            actor_id=actor.id[:ACTOR_LEN],
            action=str(action),
            target=None if target is None else target[:TARGET_LEN],
            customer_digest=customer_digest,
            address=None if actor.address is None else actor.address[:ADDRESS_LEN],
            request_id=actor.request_id,
            detail=dict(detail or {}),
            at=at or datetime.now(UTC),
        )

    def row(self) -> dict[str, Any]:
        """The entry as the `audit` table's columns."""
        return {
            "id": self.id,
            "at": self.at,
            "actor_kind": self.actor_kind,
            "actor_id": self.actor_id,
            "action": self.action,
            "target": self.target,
            "customer_digest": self.customer_digest,
            "address": self.address,
            "request_id": self.request_id,
            "detail": self.detail,
        }

    def to_json(self) -> str:
        """One spool line (without its newline)."""
        payload = self.row()
        payload["at"] = self.at.isoformat()
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str)

    @classmethod
    def from_json(cls, line: str | bytes) -> AuditEntry:
        """The entry of one spool line; ValueError (or TypeError) when it is not one."""
        payload = json.loads(line)
        if not isinstance(payload, dict):
            raise ValueError("not a JSON object")
        stamp = payload.pop("at", None)
        if not isinstance(stamp, str):
            raise ValueError("at must be a string")
        at = datetime.fromisoformat(stamp)
        if at.tzinfo is None:
            raise ValueError("at has no time zone")
        return cls(at=at, **payload)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`30m`, `24h`, `7d` ago, or an ISO date or time (UTC unless it says otherwise)."""
    found = _AGO.fullmatch(text.strip())
    now = now or datetime.now(UTC)
    if found:
        return now - timedelta(**{_UNITS[found[2]]: int(found[1])})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidRequestError(
            f"since: {text!r} is neither an age (30m, 24h, 7d) nor an ISO date or time"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def parse_actor(text: str) -> tuple[str | None, str]:
    """(kind, id) of `key:ID`, `user:NAME`, `cli:USER`; (None, text) for a bare id or name."""
    kind, sep, rest = text.partition(":")
    if sep and kind in ACTOR_KINDS and rest:
        return kind, rest
    return None, text
