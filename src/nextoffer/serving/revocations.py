"""Logged-out sessions, by token id, in the shared cache until the token would expire."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from nextoffer.cache import Cache, CacheUnavailableError, keys
from nextoffer.cache.memory import MemoryCache


class RevokedSessions:
    """A revocation list: a logged-out token is refused by every replica until it expires.

    Kept in the shared cache (Redis when configured) with a TTL of the token's remaining
    life, so the list never grows past the sessions still alive. Each process also keeps
    what it revoked itself, so its own logouts hold while the cache is unreachable.
    """

    def __init__(self, cache: Cache, *, clock: Callable[[], float] = time.time) -> None:
        self.cache = cache
        self.clock = clock
        self._local = MemoryCache(max_entries=50_000)

    def revoke(self, token_id: str, expires_at: int) -> None:
        """Refuse the token `token_id` from now until `expires_at` (a Unix time)."""
        left = expires_at - self.clock()
        if left <= 0:
            return  # expired already: refused anyway
        key = keys.revoked_session(token_id)
        self._local.set(key, "1", left)
        # While the cache is down this process still refuses it (the local copy).
        with contextlib.suppress(CacheUnavailableError):
            self.cache.set(key, "1", left)

    def is_revoked(self, token_id: str) -> bool:
        """True when the token was logged out (here, or anywhere while the cache answers)."""
        key = keys.revoked_session(token_id)
        if self._local.get(key) is not None:
            return True
        try:
            return self.cache.get(key) is not None
        except CacheUnavailableError:
            return False
