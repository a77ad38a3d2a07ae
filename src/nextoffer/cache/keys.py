"""Every cache key name and TTL, in one place (key names from the recommender seed)."""

from __future__ import annotations

from typing import Final

# Seed "Redis Configuration": hot data (features, segments, popular products) for an hour,
# session data (A/B variant assignments) for a day.
HOT_TTL_S: Final = 3600
SESSION_TTL_S: Final = 86400

OFFERS_PREFIX: Final = "offers:"

# Every character str.splitlines() breaks on: a key must stay one line in logs and redis-cli.
_LINE_BREAKS: Final = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")


def _part(value: str, what: str) -> str:
    if not value:
        raise ValueError(f"cache key {what} must not be empty")
    if not _LINE_BREAKS.isdisjoint(value):
        raise ValueError(f"cache key {what} contains a line break: {value!r}")
    return value


def _stamp(stamp: str) -> str:
    # The stamp sits between two colons; one inside it would let two (stamp, id) pairs
    # share a key, and make a per-stamp prefix match the wrong entries.
    if ":" in stamp:
        raise ValueError(f"cache key stamp must not contain ':': {stamp!r}")
    return _part(stamp, "stamp")


def user_features(customer_id: str) -> str:
    """The key of a customer's feature vector (RFM, ARPU, usage); cache for HOT_TTL_S."""
    return f"user:features:{_part(customer_id, 'customer id')}"


def user_segment(customer_id: str) -> str:
    """The key of a customer's segment assignment; cache for HOT_TTL_S."""
    return f"user:segment:{_part(customer_id, 'customer id')}"


def segment_popular(segment_id: str) -> str:
    """The key of a segment's popular products; cache for HOT_TTL_S."""
    return f"segment:popular:{_part(segment_id, 'segment id')}"


def session_variant(session_id: str) -> str:
    """The key of a session's A/B variant assignment; cache for SESSION_TTL_S."""
    return f"session:variant:{_part(session_id, 'session id')}"


def offers(customer_id: str, stamp: str) -> str:
    """The key of a customer's ranked offers under `stamp` (the models + features version).

    A new champion or new features make a new stamp, so stale entries are simply never read
    again and expire on their own; no scan is needed to invalidate them.
    """
    return f"{OFFERS_PREFIX}{_stamp(stamp)}:{_part(customer_id, 'customer id')}"


def rate_limit(principal: str, window: int) -> str:
    """The key of a principal's request counter in fixed window number `window`."""
    return f"ratelimit:{_part(principal, 'principal')}:{window}"


def churn_risk(customer_id: str, stamp: str) -> str:
    """The key of a customer's churn risk under `stamp` (the models + features version)."""
    return f"churn:{_stamp(stamp)}:{_part(customer_id, 'customer id')}"


def login_throttle(scope: str, digest: str) -> str:
    """The key of a login throttle's state for one scope (pair, user, address) and subject."""
    return f"login:{_part(scope, 'scope')}:{_part(digest, 'digest')}"


def revoked_session(session_id: str) -> str:
    """The key marking a console session (its token's jti) as logged out until it expires."""
    return f"session:revoked:{_part(session_id, 'session id')}"


def contact_facts(customer_id: str, stamp: str) -> str:
    """The key of a customer's consent facts under `stamp` (an import makes a new one)."""
    return f"consent:{_stamp(stamp)}:{_part(customer_id, 'customer id')}"
