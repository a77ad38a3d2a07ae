"""A batch of N counts N, all or nothing, in memory and on Redis; and the prefetching cache
answers a batch's reads from one MGET, privately to the request that made it."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from nextoffer.cache import Cache
from nextoffer.cache.memory import MemoryCache
from nextoffer.cache.prefetch import PrefetchingCache, prefetched
from nextoffer.domain.errors import RateLimitedError
from nextoffer.serving.rate_limit import RateLimiter
from tests.conftest import require_service

REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def cache(request: pytest.FixtureRequest) -> Iterator[Cache]:
    if request.param == "memory":
        yield MemoryCache(max_entries=1000)
        return
    require_service("Redis", "127.0.0.1", 6379)
    from nextoffer.cache.redis_cache import RedisCache

    backend = RedisCache(REDIS_URL)
    yield backend
    backend.close()


def test_a_batch_takes_n_or_nothing(cache: Cache) -> None:
    limiter = RateLimiter(cache, per_minute=5)
    me = f"key:{uuid.uuid4().hex}"  # a counter nobody else shares
    limiter.check(me)
    limiter.take(me, 2)  # a batch of 3: 3 used
    limiter.check(me)
    with pytest.raises(RateLimitedError) as refused:
        limiter.take(me, 2)  # a second batch of 3 with 2 left: refused, gives its 2 back
    assert "2 were left" in str(refused.value)
    assert 1 <= refused.value.retry_after_s <= 60
    limiter.check(me)  # 5th request: the refused batch cost one, not three
    with pytest.raises(RateLimitedError):
        limiter.check(me)


def test_a_batch_over_the_whole_limit_is_told_to_split(cache: Cache) -> None:
    limiter = RateLimiter(cache, per_minute=3)
    me = f"key:{uuid.uuid4().hex}"
    limiter.check(me)
    with pytest.raises(RateLimitedError, match="split the batch"):
        limiter.take(me, 3)
    limiter.check(me)  # the four were given back: 2 used, one more fits
    limiter.check(me)
    with pytest.raises(RateLimitedError):
        limiter.check(me)


def test_incr_adds_any_amount(cache: Cache) -> None:
    key = f"count:{uuid.uuid4().hex}"
    assert cache.incr(key, 60, 5) == 5
    assert cache.incr(key, 60, -2) == 3
    assert cache.incr(key, 60) == 4
    cache.delete(key)


class CountingCache(MemoryCache):
    """A memory cache that counts its reads."""

    def __init__(self) -> None:
        super().__init__(max_entries=1000)
        self.calls: list[str] = []

    def get(self, key: str) -> str | None:
        self.calls.append("get")
        return super().get(key)

    def mget(self, keys: Any) -> list[str | None]:
        self.calls.append("mget")
        return super().mget(keys)


def test_reads_inside_prefetched_come_from_one_mget() -> None:
    inner = CountingCache()
    cache = PrefetchingCache(inner)
    inner.set_many({"a": "1", "b": "2"})
    with prefetched(cache, ["a", "b", "c"]) as fetched:
        assert fetched == 3
        assert [cache.get("a"), cache.get("b"), cache.get("c")] == ["1", "2", None]
        assert inner.calls == ["mget"]
        cache.set("a", "changed")  # a write goes through, and the batch reads it back
        assert cache.get("a") == inner.get("a") == "changed"
        cache.delete("b")
        assert cache.get("b") is None and inner.get("b") is None
        inner.calls.clear()
        seen_elsewhere: list[str | None] = []
        other = threading.Thread(target=lambda: seen_elsewhere.append(cache.get("c")))
        inner.set("c", "3")
        other.start()
        other.join()
        assert seen_elsewhere == ["3"]  # another request reads the backend, not this memo
        assert cache.get("c") is None  # this one still reads what it fetched
    assert inner.calls == ["get"]  # only the other thread's read reached the backend
    assert cache.get("c") == "3"  # after the block, the backend again


def test_prefetched_is_a_no_op_on_a_plain_cache() -> None:
    inner = CountingCache()
    with prefetched(inner, ["a"]) as fetched:
        assert fetched == 0
    assert inner.calls == []
