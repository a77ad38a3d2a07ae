"""Cache deletions that cannot be lost: kept while the cache is away, done once it is back.

An accept recorded while Redis is unreachable must still drop the customer's cached answer,
or the accepted product comes back from the cache (for up to its TTL) once Redis returns
with its data. A deletion that fails is queued here and retried before this process reads
the cache again, and by a background round (`flush`), so a stale entry outlives the outage
by at most one round in the other processes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from nextoffer.cache.base import Cache, CacheUnavailableError

log = logging.getLogger(__name__)

MAX_PENDING = 100_000
"""Keys queued at most; past that, every key under the prefix is dropped instead."""


class DeferredDeletes:
    """Deletes keys of one prefix now, or as soon as the cache answers again."""

    def __init__(self, cache: Cache, prefix: str, max_pending: int = MAX_PENDING) -> None:
        self.cache = cache
        self.prefix = prefix
        self.max_pending = max_pending
        self._lock = threading.Lock()
        self._keys: set[str] = set()
        self._everything = False
        """Too many keys queued: drop the whole prefix when the cache is back."""

    @property
    def pending(self) -> int:
        """Keys waiting (the prefix counts as one)."""
        with self._lock:
            return len(self._keys) + int(self._everything)

    def delete(self, keys: Iterable[str]) -> None:
        """Delete `keys` now; if the cache is unavailable, queue them. Never raises for that."""
        wanted = list(keys)
        if not wanted:
            return
        try:
            self.cache.delete(*wanted)
        except CacheUnavailableError:
            self._queue(wanted)

    def flush(self) -> bool:
        """Do the queued deletions: True when none is left, False while the cache is away.

        Nothing queued is True at once, without touching the cache.
        """
        if not self._keys and not self._everything:
            return True  # the hot path of every answer: no lock when nothing waits
        with self._lock:
            keys, everything = list(self._keys), self._everything
        try:
            if everything:
                self.cache.delete_prefix(self.prefix)
            else:
                self.cache.delete(*keys)
        except CacheUnavailableError:
            return False
        with self._lock:
            self._keys.difference_update(keys)
            if everything:
                self._everything = False
        log.info("cache back: %s deferred deletions done", "all" if everything else len(keys))
        return True

    def _queue(self, keys: list[str]) -> None:
        with self._lock:
            if self._everything:
                return
            self._keys.update(keys)
            if len(self._keys) > self.max_pending:
                self._keys.clear()
                self._everything = True
        log.warning("cache unavailable: %d deletions deferred until it is back", len(keys))
