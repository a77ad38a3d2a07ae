"""In-process cache: TTL on a fake clock, LRU order, prefixes, counters, threads; cache URLs."""

from __future__ import annotations

import threading

import pytest

from nextoffer.cache import Cache, CacheUnavailableError, MemoryCache, keys, make_cache
from nextoffer.cache.base import safe_cache_url
from nextoffer.cache.memory import DEFAULT_MAX_ENTRIES
from nextoffer.cache.redis_cache import RedisCache
from nextoffer.domain.errors import BackendUnavailableError, ConfigError


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cache(clock: FakeClock) -> MemoryCache:
    return MemoryCache(max_entries=100, clock=clock)


def test_memory_cache_follows_the_protocol(cache: MemoryCache) -> None:
    assert isinstance(cache, Cache)
    assert cache.name == "memory"
    assert cache.ping() is True


def test_entry_expires_exactly_at_its_ttl(cache: MemoryCache, clock: FakeClock) -> None:
    cache.set("a", "1", ttl_s=10)
    cache.set("forever", "2")
    clock.advance(9.999)
    assert cache.get("a") == "1"
    clock.advance(0.001)
    assert cache.get("a") is None
    assert cache.mget(["a", "forever"]) == [None, "2"]
    clock.advance(10**9)
    assert cache.get("forever") == "2"


def test_set_replaces_value_and_ttl(cache: MemoryCache, clock: FakeClock) -> None:
    cache.set("a", "1", ttl_s=5)
    cache.set("a", "2")
    clock.advance(100)
    assert cache.get("a") == "2"
    cache.set("a", "3", ttl_s=1)
    clock.advance(1)
    assert cache.get("a") is None


def test_expired_entries_do_not_count_as_deleted(cache: MemoryCache, clock: FakeClock) -> None:
    cache.set_many({"a": "1", "b": "2"}, ttl_s=1)
    cache.set("c", "3")
    clock.advance(2)
    assert cache.delete("a", "c", "missing") == 1
    assert cache.mget(["a", "b", "c"]) == [None, None, None]


def test_lru_evicts_least_recently_used(clock: FakeClock) -> None:
    cache = MemoryCache(max_entries=3, clock=clock)
    cache.set("a", "1")
    cache.set("b", "2")
    cache.set("c", "3")
    assert cache.get("a") == "1"  # a is now the most recent; b the least
    cache.set("d", "4")
    assert cache.mget(["a", "b", "c", "d"]) == ["1", None, "3", "4"]
    assert cache.mget(["c"]) == ["3"]  # mget counts as use too: a is now the least recent
    cache.set("e", "5")
    assert cache.mget(["a", "c", "d", "e"]) == [None, "3", "4", "5"]


def test_overwrite_does_not_evict(clock: FakeClock) -> None:
    cache = MemoryCache(max_entries=2, clock=clock)
    cache.set("a", "1")
    cache.set("b", "2")
    cache.set("a", "3")
    assert cache.mget(["a", "b"]) == ["3", "2"]


def test_set_many_beyond_capacity_keeps_the_last(clock: FakeClock) -> None:
    cache = MemoryCache(max_entries=2, clock=clock)
    cache.set_many({"a": "1", "b": "2", "c": "3"})
    assert cache.mget(["a", "b", "c"]) == [None, "2", "3"]


def test_mget_keeps_order_and_duplicates(cache: MemoryCache) -> None:
    cache.set_many({"a": "1", "b": "2"})
    assert cache.mget(["b", "missing", "a", "b"]) == ["2", None, "1", "2"]
    assert cache.mget([]) == []


def test_delete_prefix_removes_only_matching_live_keys(
    cache: MemoryCache, clock: FakeClock
) -> None:
    cache.set_many({"offers:v1:1": "x", "offers:v1:2": "y", "offers:v2:1": "z", "user:1": "u"})
    cache.set("offers:v1:old", "o", ttl_s=1)
    clock.advance(1)
    assert cache.delete_prefix("offers:v1:") == 2
    assert cache.mget(["offers:v1:1", "offers:v1:2", "offers:v2:1", "user:1"]) == [
        None,
        None,
        "z",
        "u",
    ]
    assert cache.delete_prefix("nothing:") == 0
    with pytest.raises(ValueError, match="empty"):
        cache.delete_prefix("")


def test_incr_is_a_fixed_window_counter(cache: MemoryCache, clock: FakeClock) -> None:
    assert cache.incr("rl", ttl_s=60) == 1
    clock.advance(59)
    # Counting again does not push the window on: it still ends 60 s after the first hit.
    assert cache.incr("rl", ttl_s=60) == 2
    assert cache.get("rl") == "2"
    clock.advance(1)
    assert cache.get("rl") is None
    assert cache.incr("rl", ttl_s=60) == 1


def test_incr_rejects_a_non_integer(cache: MemoryCache) -> None:
    cache.set("text", "abc")
    cache.set("spaced", " 5")
    with pytest.raises(ValueError, match="not an integer"):
        cache.incr("text", ttl_s=1)
    with pytest.raises(ValueError, match="not an integer"):
        cache.incr("spaced", ttl_s=1)
    cache.set("negative", "-3")
    assert cache.incr("negative", ttl_s=1) == -2


@pytest.mark.parametrize("ttl_s", [0, -1, float("inf"), float("nan")])
def test_bad_ttl_is_rejected(cache: MemoryCache, ttl_s: float) -> None:
    with pytest.raises(ValueError, match="TTL"):
        cache.set("a", "1", ttl_s=ttl_s)
    with pytest.raises(ValueError, match="TTL"):
        cache.incr("a", ttl_s=ttl_s)


def test_concurrent_incr_counts_every_call(cache: MemoryCache) -> None:
    threads, per_thread = 8, 2000
    barrier = threading.Barrier(threads)

    def hammer() -> None:
        barrier.wait()
        for i in range(per_thread):
            cache.incr("hits", ttl_s=3600)
            # Interleave other work so threads also race on the LRU order.
            cache.set(f"k{i % 50}", "v")
            cache.get(f"k{(i + 25) % 50}")

    workers = [threading.Thread(target=hammer) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert cache.get("hits") == str(threads * per_thread)


def test_close_drops_everything(cache: MemoryCache) -> None:
    cache.set("a", "1")
    cache.close()
    assert cache.get("a") is None


def test_max_entries_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryCache(max_entries=0)


def test_make_cache_memory() -> None:
    cache = make_cache("memory://")
    assert isinstance(cache, MemoryCache)
    assert cache.max_entries == DEFAULT_MAX_ENTRIES == 20_000
    sized = make_cache("memory://?max_entries=5")
    assert isinstance(sized, MemoryCache)
    assert sized.max_entries == 5


def test_make_cache_redis_does_not_connect() -> None:
    # Port 1 never has Redis: making the cache must still succeed, and calls fail cleanly.
    cache = make_cache("redis://:hunter2@127.0.0.1:1/3")
    assert isinstance(cache, RedisCache)
    assert cache.name == "redis"
    assert cache.available
    with pytest.raises(CacheUnavailableError) as caught:
        cache.get("a")
    assert isinstance(caught.value, BackendUnavailableError)
    assert caught.value.setting == "NEXTOFFER_CACHE_URL"
    assert "hunter2" not in str(caught.value)
    assert "127.0.0.1:1" in str(caught.value)
    assert not cache.available
    assert cache.ping() is False
    cache.close()
    for url in ["rediss://user:pw@localhost:6380/0", "unix:///tmp/redis.sock?db=2"]:
        assert isinstance(make_cache(url), RedisCache)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("", "use memory://"),
        ("memcached://localhost", "use memory://"),
        ("localhost:6379", "use memory://"),
        ("memory://somewhere", "memory://?max_entries=N"),
        ("memory://?max_entries=0", "positive integer"),
        ("memory://?max_entries=lots", "positive integer"),
        ("memory://?size=3", "unknown option"),
        ("redis://:hunter2@localhost/notadb", "database in a Redis URL is a number"),
        ("redis://:hunter2@localhost/0?db=x", "not a usable Redis URL"),
        ("redis://:hunter2@localhost:port/0", "not a usable Redis URL"),
        ("http://:hunter2@localhost/", "use memory://"),
    ],
)
def test_make_cache_rejects_bad_urls(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_cache(url)
    message = str(caught.value)
    assert message.startswith("NEXTOFFER_CACHE_URL: ")
    assert fragment in message
    assert "hunter2" not in message


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@cache:6379/2", "redis://:***@cache:6379/2"),
        ("rediss://app:s%40cret@cache:6380/0", "rediss://app:***@cache:6380/0"),
        ("unix:///run/redis.sock?password=s3cret&db=1", "unix:///run/redis.sock?password=***&db=1"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        (":s3cret@cache:6379", "<unparseable URL>"),
    ],
)
def test_safe_cache_url_masks_passwords(url: str, shown: str) -> None:
    assert safe_cache_url(url) == shown


def test_keys_follow_the_seed_names() -> None:
    assert keys.user_features("C1") == "user:features:C1"
    assert keys.user_segment("C1") == "user:segment:C1"
    assert keys.segment_popular("3") == "segment:popular:3"
    assert keys.session_variant("s-9") == "session:variant:s-9"
    assert keys.offers("C:1 x", "m7f3") == "offers:m7f3:C:1 x"
    assert keys.offers("C1", "m7f3").startswith(keys.OFFERS_PREFIX)
    assert keys.rate_limit("key:abc", 28_000_000) == "ratelimit:key:abc:28000000"
    assert keys.churn_risk("C1", "m7f3") == "churn:m7f3:C1"
    assert (keys.HOT_TTL_S, keys.SESSION_TTL_S) == (3600, 86400)


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\u2028b", ""])
def test_keys_stay_one_line(bad: str) -> None:
    with pytest.raises(ValueError, match="cache key"):
        keys.user_features(bad)


def test_offer_stamp_cannot_hold_a_colon() -> None:
    with pytest.raises(ValueError, match="stamp"):
        keys.offers("C1", "a:b")
    with pytest.raises(ValueError, match="stamp"):
        keys.churn_risk("C1", "a:b")
