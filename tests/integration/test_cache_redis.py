"""One cache contract for memory and Redis, and the Redis circuit breaker against a real server."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import redis.connection

from nextoffer.cache import Cache, CacheUnavailableError, MemoryCache, keys
from nextoffer.cache.redis_cache import RedisCache
from tests.conftest import IN_CI, port_open, require_service

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
# A database nothing else uses, so FLUSHDB cannot hurt anyone's data.
REDIS_DB = 15


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def cache(request: pytest.FixtureRequest) -> Iterator[Cache]:
    """Each contract test runs once on MemoryCache and once on Redis database 15."""
    if request.param == "memory":
        yield MemoryCache(max_entries=10_000)
        return
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    admin = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
    admin.flushdb()
    backend = RedisCache(f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}")
    try:
        yield backend
    finally:
        backend.close()
        admin.flushdb()
        admin.close()


def test_name_and_ping(cache: Cache) -> None:
    assert isinstance(cache, Cache)
    assert cache.name in {"memory", "redis"}
    assert cache.ping() is True


def test_get_and_set(cache: Cache) -> None:
    assert cache.get("missing") is None
    cache.set("a", "1")
    cache.set("a", "2")
    odd_key = "user:features:C:1 x*?[y]"
    cache.set(odd_key, "héllo ✓ {json: true}")
    assert cache.get("a") == "2"
    assert cache.get(odd_key) == "héllo ✓ {json: true}"
    cache.set("empty", "")
    assert cache.get("empty") == ""


def test_mget_and_set_many(cache: Cache) -> None:
    assert cache.mget([]) == []
    cache.set_many({})
    cache.set_many({"a": "1", "b": "2", "c": "3"})
    cache.set_many({"c": "33"}, ttl_s=60)
    assert cache.mget(["c", "missing", "a", "c"]) == ["33", None, "1", "33"]


def test_delete_counts_existing_keys(cache: Cache) -> None:
    cache.set_many({"a": "1", "b": "2"})
    assert cache.delete() == 0
    assert cache.delete("a", "missing", "a") == 1
    assert cache.delete("b") == 1
    assert cache.mget(["a", "b"]) == [None, None]


def test_delete_prefix_is_literal_and_batched(cache: Cache) -> None:
    # More keys than one SCAN/UNLINK batch, and glob characters that must match literally.
    old = {keys.offers(f"C{i}", "v1"): "x" for i in range(1200)}
    cache.set_many(old)
    cache.set_many({keys.offers("C1", "v2"): "new", "offers:v1": "no trailing colon"})
    cache.set_many({"a*b:1": "1", "a*b:2": "2", "aXb:1": "3", "a[*]:1": "4", "a*:1": "5"})
    assert cache.delete_prefix("offers:v1:") == 1200
    assert cache.get(keys.offers("C7", "v1")) is None
    assert cache.mget([keys.offers("C1", "v2"), "offers:v1"]) == ["new", "no trailing colon"]
    assert cache.delete_prefix("a*b:") == 2
    assert cache.delete_prefix("a[*]") == 1
    assert cache.mget(["aXb:1", "a*:1"]) == ["3", "5"]
    assert cache.delete_prefix("nothing-here:") == 0
    with pytest.raises(ValueError, match="empty"):
        cache.delete_prefix("")


def test_ttl_semantics(cache: Cache) -> None:
    cache.set("short", "s", ttl_s=1.0)
    cache.set_many({"m1": "1", "m2": "2"}, ttl_s=1.0)
    cache.set("long", "l", ttl_s=60)
    cache.set("forever", "f")
    cache.set("replaced", "old", ttl_s=1.0)
    cache.set("replaced", "new")  # a set without TTL drops the old TTL
    assert cache.incr("counter", ttl_s=1.0) == 1
    time.sleep(0.2)
    assert cache.mget(["short", "m1", "m2"]) == ["s", "1", "2"]
    assert cache.incr("counter", ttl_s=1.0) == 2
    time.sleep(0.9)
    # 1.1 s after the writes: the 1 s entries are gone. The counter went too although its
    # last increment was only 0.9 s ago: its window runs from its creation.
    assert cache.mget(["short", "m1", "m2", "counter"]) == [None, None, None, None]
    assert cache.mget(["long", "forever", "replaced"]) == ["l", "f", "new"]
    assert cache.delete("short") == 0
    assert cache.incr("counter", ttl_s=1.0) == 1


def test_incr_counts_and_reads_back(cache: Cache) -> None:
    for expected in range(1, 6):
        assert cache.incr(keys.rate_limit("key:abc", 7), ttl_s=60) == expected
    assert cache.get("ratelimit:key:abc:7") == "5"
    cache.set("preset", "41")
    assert cache.incr("preset", ttl_s=60) == 42
    cache.set("text", "abc")
    with pytest.raises(ValueError, match="not an integer"):
        cache.incr("text", ttl_s=60)
    assert cache.get("text") == "abc"


@pytest.mark.parametrize("ttl_s", [0, -5, float("inf")])
def test_bad_ttl_is_rejected_the_same_way(cache: Cache, ttl_s: float) -> None:
    with pytest.raises(ValueError, match="TTL"):
        cache.set("a", "1", ttl_s=ttl_s)
    with pytest.raises(ValueError, match="TTL"):
        cache.set_many({"a": "1"}, ttl_s=ttl_s)
    with pytest.raises(ValueError, match="TTL"):
        cache.incr("a", ttl_s=ttl_s)
    assert cache.get("a") is None


# --- the circuit breaker, against a private redis-server that the test kills and restarts


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((REDIS_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class PrivateRedis:
    """A throwaway redis-server on its own port, without persistence."""

    def __init__(self, port: int, folder: Path) -> None:
        self.port = port
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port", str(self.port),
                "--bind", REDIS_HOST,
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not port_open(REDIS_HOST, self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        self.process.wait(timeout=10)
        self.process = None

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        if IN_CI:
            pytest.fail("redis-server is not installed (CI=true: a missing service is a failure)")
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(_free_port(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            server.resume()
        server.stop()


class FakeClock:
    """The breaker's clock, moved by hand so the test never races a real timer."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def connect_attempts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every TCP connect redis-py tries from now on appends to this list."""
    attempts: list[int] = []
    original: Callable[[redis.connection.Connection], socket.socket] = (
        redis.connection.Connection._connect
    )

    def counting(self: redis.connection.Connection) -> socket.socket:
        attempts.append(self.port)
        return original(self)

    monkeypatch.setattr(redis.connection.Connection, "_connect", counting)
    return attempts


@pytest.mark.integration
def test_breaker_fails_fast_while_redis_is_down_and_recovers(
    private_redis: PrivateRedis, connect_attempts: list[int]
) -> None:
    clock = FakeClock()
    cache = RedisCache(
        f"redis://{REDIS_HOST}:{private_redis.port}/0", retry_after_s=0.2, clock=clock
    )
    try:
        cache.set("a", "1")
        assert cache.get("a") == "1"
        assert cache.available

        private_redis.stop()
        with pytest.raises(CacheUnavailableError, match="NEXTOFFER_CACHE_URL"):
            cache.get("a")
        assert not cache.available
        tried = len(connect_attempts)
        assert tried >= 1  # the first failure did go to the network

        # Within retry_after_s every call fails at once, and none reaches for a socket.
        for _ in range(20):
            with pytest.raises(CacheUnavailableError, match="not retried"):
                cache.get("a")
        with pytest.raises(CacheUnavailableError):
            cache.set_many({"b": "2"})
        assert cache.ping() is False
        assert len(connect_attempts) == tried

        # Once the time is up one call probes; still down, so the breaker opens again.
        clock.now += 0.2
        with pytest.raises(CacheUnavailableError):
            cache.incr("c", ttl_s=1)
        assert len(connect_attempts) == tried + 1
        with pytest.raises(CacheUnavailableError, match="not retried"):
            cache.get("a")
        assert len(connect_attempts) == tried + 1

        private_redis.start()
        with pytest.raises(CacheUnavailableError, match="not retried"):
            cache.get("a")  # up again, but the breaker has not let a probe through yet
        clock.now += 0.2
        assert cache.get("a") is None  # a fresh server: the old data went with the old one
        assert cache.available
        cache.set("a", "back")
        assert cache.mget(["a"]) == ["back"]
        assert cache.ping() is True
    finally:
        cache.close()


@pytest.mark.integration
def test_breaker_opens_on_a_hung_server(private_redis: PrivateRedis) -> None:
    clock = FakeClock()
    cache = RedisCache(
        f"redis://{REDIS_HOST}:{private_redis.port}/0",
        retry_after_s=0.2,
        socket_timeout=0.3,
        clock=clock,
    )
    try:
        cache.set("a", "1")
        private_redis.pause()  # accepts nothing, answers nothing: only a timeout ends a call
        with pytest.raises(CacheUnavailableError, match="Timeout"):
            cache.get("a")
        assert not cache.available
        with pytest.raises(CacheUnavailableError, match="not retried"):
            cache.get("a")
        private_redis.resume()
        clock.now += 0.2
        assert cache.get("a") == "1"
        assert cache.available
    finally:
        cache.close()


def test_error_messages_never_show_the_password(tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there
    secret = "s3cr%40t-pw"
    cache = RedisCache(f"redis://app:{secret}@{REDIS_HOST}:{port}/2?password=other-pw")
    try:
        with pytest.raises(CacheUnavailableError) as caught:
            cache.get("a")
        message = str(caught.value)
        assert f"{REDIS_HOST}:{port}" in message
        for leaked in ("s3cr", "s3cr@t-pw", "other-pw"):
            assert leaked not in message
    finally:
        cache.close()
