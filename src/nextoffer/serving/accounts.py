"""Who is calling, and what key, user and token checks share: errors, roles, a cache."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, Literal, TypeVar, cast

from cachetools import LRUCache, TTLCache

from nextoffer.domain.errors import NextOfferError
from nextoffer.domain.roles import Role, parse_role

log = logging.getLogger(__name__)

PrincipalKind = Literal["key", "user"]

CACHE_MAX = 10_000


class AccountError(NextOfferError, ValueError):
    """A username, password, role or key name is not acceptable; the message says why."""


class DuplicateUserError(AccountError):
    """The username is already taken."""


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: an API key (id = key_id) or a user (id = username)."""

    kind: PrincipalKind
    id: str
    role: Role


def utcnow() -> datetime:
    return datetime.now(UTC)


def granted_role(value: Role | str) -> Role:
    if isinstance(value, Role):
        return value
    try:
        return parse_role(value)
    except ValueError as exc:
        raise AccountError(str(exc)) from None


def stored_role(text: str) -> Role | None:
    # A role the code does not know (a hand-edited row) grants nothing rather than crash.
    try:
        return Role(text)
    except ValueError:
        log.warning("account with unknown role %r denied", text)
        return None


K = TypeVar("K")
V = TypeVar("V")
_MISSING = object()


class TtlCache(Generic[K, V]):
    """Answers remembered for `ttl_s` seconds, plus the last answer per key for outages.

    A cachetools TTLCache holds the live entries. An expired answer is still wanted while the
    database is down (`last`), so a bounded LRU cache keeps the last value put under each key.
    cachetools caches are not thread-safe: every access holds the lock.
    """

    def __init__(self, ttl_s: float, clock: Callable[[], float]) -> None:
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._live: TTLCache[K, V, float] = TTLCache(CACHE_MAX, max(ttl_s, 0.0), timer=clock)
        self._last: LRUCache[K, V] = LRUCache(CACHE_MAX)

    def get(self, key: K) -> tuple[bool, V | None]:
        """(True, value) for a live entry, (False, None) otherwise."""
        if self._ttl_s <= 0:
            return False, None
        with self._lock:
            # One lookup: `in` then `[]` could straddle the expiry instant.
            found = self._live.get(key, _MISSING)
        if found is _MISSING:
            return False, None
        return True, cast(V, found)

    def last(self, key: K) -> tuple[bool, V | None]:
        """(True, value) for the last value put, expired or not; (False, None) for none."""
        with self._lock:
            if key not in self._last:
                return False, None
            return True, self._last[key]

    def discard(self, key: K) -> None:
        """Forget `key`, expired or not."""
        with self._lock:
            self._live.pop(key, None)
            self._last.pop(key, None)

    def put(self, key: K, value: V) -> None:
        """Keep `value` for `ttl_s` seconds (nothing when caching is off)."""
        if self._ttl_s <= 0:
            return
        with self._lock:
            self._live[key] = value
            self._last[key] = value

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._live.clear()
            self._last.clear()
