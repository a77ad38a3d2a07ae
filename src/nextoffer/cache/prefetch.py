"""A cache whose reads inside `prefetched(keys)` come from one MGET instead of one GET each.

A batch of answers (`POST /v1/offers:batch`) reads the same keys, one customer at a time,
as the single answers do. Wrapping the process's cache in `PrefetchingCache` lets the
batch fetch every key it will need in one round trip first, then run the single-answer
code unchanged: inside the block, `get` answers from what was fetched. The memo lives in
a context variable, so it is private to the request that made it (concurrent requests
on other threads still read the backend), and it ends with the block.

A write or delete of a prefetched key through this cache updates the memo too, so the
batch reads back what it wrote, as it would from the backend. (A change made by another
request meanwhile is not seen by the rest of the batch: as if the batch had read first.)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

from nextoffer.cache.base import Cache, CacheUnavailableError

_MEMO: ContextVar[dict[str, str | None] | None] = ContextVar(
    "nextoffer_cache_prefetch", default=None
)


class PrefetchingCache:
    """`inner` with reads answered from a block prefetched by `prefetched`, when there is one."""

    def __init__(self, inner: Cache) -> None:
        self.inner = inner
        self.name = inner.name

    def get(self, key: str) -> str | None:
        """The prefetched value of `key` inside `prefetched`, else the backend's."""
        memo = _MEMO.get()
        if memo is not None and key in memo:
            return memo[key]
        return self.inner.get(key)

    def mget(self, keys: Sequence[str]) -> list[str | None]:
        """The backend's values (never the memo: a caller of mget wants them fresh)."""
        return self.inner.mget(keys)

    def set(self, key: str, value: str, ttl_s: float | None = None) -> None:
        """Store in the backend (and in the memo, when the key is in it)."""
        self.inner.set(key, value, ttl_s)
        _remember({key: value})

    def set_many(self, items: Mapping[str, str], ttl_s: float | None = None) -> None:
        """Store every item in the backend (and in the memo, for the keys in it)."""
        self.inner.set_many(items, ttl_s)
        _remember(items)

    def delete(self, *keys: str) -> int:
        """Remove `keys` from the backend (the memo reads them as absent)."""
        removed = self.inner.delete(*keys)
        _remember(dict.fromkeys(keys))
        return removed

    def delete_prefix(self, prefix: str) -> int:
        """Remove every key starting with `prefix` from the backend (and the memo)."""
        removed = self.inner.delete_prefix(prefix)
        memo = _MEMO.get()
        if memo is not None:
            _remember(dict.fromkeys(k for k in memo if k.startswith(prefix)))
        return removed

    def keys_with_prefix(self, prefix: str) -> list[str]:
        """The backend's live keys starting with `prefix`."""
        return self.inner.keys_with_prefix(prefix)

    def incr(self, key: str, ttl_s: float, amount: int = 1) -> int:
        """The backend's counter (counters are never prefetched)."""
        return self.inner.incr(key, ttl_s, amount)

    def ping(self) -> bool:
        """Whether the backend answers."""
        return self.inner.ping()

    def close(self) -> None:
        """Close the backend."""
        self.inner.close()


def _remember(values: Mapping[str, str | None]) -> None:
    """Update the memo's entries for `values`' keys (only keys it already holds)."""
    memo = _MEMO.get()
    if memo is not None:
        for key, value in values.items():
            if key in memo:
                memo[key] = value


@contextmanager
def prefetched(cache: Cache, keys: Sequence[str]) -> Iterator[int]:
    """Inside the block, `cache.get` of any of `keys` reads one MGET made on entry.

    Yields how many keys were fetched (0 when `cache` is not a PrefetchingCache or the
    backend is unreachable: every read then goes to the backend, which says so itself).
    """
    if not isinstance(cache, PrefetchingCache) or not keys:
        yield 0
        return
    unique = list(dict.fromkeys(keys))
    try:
        values = cache.inner.mget(unique)
    except CacheUnavailableError:
        yield 0
        return
    token = _MEMO.set(dict(zip(unique, values, strict=True)))
    try:
        yield len(unique)
    finally:
        _MEMO.reset(token)
