"""In-process cache: a bounded LRU with per-entry TTL, for one process or tests."""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

from nextoffer.cache.base import check_prefix, check_ttl

# An offers answer is about 2 KB of JSON: 20 000 entries keep a process near 50 MB, inside
# the API's memory budget; Redis holds the full working set in production.
DEFAULT_MAX_ENTRIES = 20_000
# What Redis INCR accepts; int() alone would also take " 5", "+5" and "1_000".
_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")


class MemoryCache:
    """A thread-safe LRU cache of strings with per-entry TTL.

    When full, the least recently used entry goes first; reads count as use. Expired entries
    are dropped when they are next touched, and never returned.
    """

    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self.name: str = "memory"
        self.max_entries = max_entries
        self._clock = clock
        # value, and the clock reading at which it expires (None: never)
        self._entries: OrderedDict[str, tuple[str, float | None]] = OrderedDict()
        # One lock for everything: FastAPI runs sync endpoints in a thread pool, and an
        # OrderedDict reordered from two threads at once corrupts its links.
        self._lock = threading.Lock()

    def _live(self, key: str, now: float) -> tuple[str, float | None] | None:
        """The entry under `key` made most recent, or None; drops it if expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at = entry[1]
        if expires_at is not None and now >= expires_at:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    def _put(self, key: str, value: str, expires_at: float | None) -> None:
        self._entries[key] = (value, expires_at)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def _expiry(self, now: float, ttl_s: float | None) -> float | None:
        return None if ttl_s is None else now + ttl_s

    def get(self, key: str) -> str | None:
        """The value under `key`, or None when absent or expired."""
        with self._lock:
            entry = self._live(key, self._clock())
            return None if entry is None else entry[0]

    def mget(self, keys: Sequence[str]) -> list[str | None]:
        """The values under `keys`, in order, None for each absent or expired key."""
        with self._lock:
            now = self._clock()
            values: list[str | None] = []
            for key in keys:
                entry = self._live(key, now)
                values.append(None if entry is None else entry[0])
            return values

    def set(self, key: str, value: str, ttl_s: float | None = None) -> None:
        """Store `value` under `key`, replacing any value and TTL it had."""
        check_ttl(ttl_s)
        with self._lock:
            self._put(key, value, self._expiry(self._clock(), ttl_s))

    def set_many(self, items: Mapping[str, str], ttl_s: float | None = None) -> None:
        """Store every item with the same TTL."""
        check_ttl(ttl_s)
        with self._lock:
            expires_at = self._expiry(self._clock(), ttl_s)
            for key, value in items.items():
                self._put(key, value, expires_at)

    def delete(self, *keys: str) -> int:
        """Remove `keys`; the number that existed (expired ones do not count)."""
        with self._lock:
            now = self._clock()
            removed = 0
            for key in keys:
                if self._live(key, now) is not None:
                    del self._entries[key]
                    removed += 1
            return removed

    def delete_prefix(self, prefix: str) -> int:
        """Remove every key starting with `prefix`; the number of live keys removed."""
        check_prefix(prefix)
        with self._lock:
            now = self._clock()
            matching = [key for key in self._entries if key.startswith(prefix)]
            removed = 0
            for key in matching:
                expires_at = self._entries.pop(key)[1]
                if expires_at is None or now < expires_at:
                    removed += 1
            return removed

    def keys_with_prefix(self, prefix: str) -> list[str]:
        """Every live key starting with `prefix`."""
        check_prefix(prefix)
        with self._lock:
            now = self._clock()
            return [
                key
                for key, (_value, expires_at) in self._entries.items()
                if key.startswith(prefix) and (expires_at is None or now < expires_at)
            ]

    def incr(self, key: str, ttl_s: float, amount: int = 1) -> int:
        """Add `amount` to the counter under `key`; its TTL starts when it is created."""
        check_ttl(ttl_s)
        with self._lock:
            now = self._clock()
            entry = self._live(key, now)
            if entry is None:
                count, expires_at = amount, self._expiry(now, ttl_s)
            else:
                if not _INTEGER.fullmatch(entry[0]):
                    raise ValueError(f"cache value under {key!r} is not an integer")
                count = int(entry[0]) + amount
                expires_at = entry[1]
            self._put(key, str(count), expires_at)
            return count

    def ping(self) -> bool:
        """Always True: the cache lives in this process."""
        return True

    def close(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._entries.clear()
