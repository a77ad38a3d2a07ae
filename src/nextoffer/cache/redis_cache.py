"""Redis cache on redis-py, with a circuit breaker so a dead Redis costs no request a timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.exceptions import (
    ClusterDownError,
    InvalidResponse,
    MaxConnectionsError,
    OutOfMemoryError,
    ReadOnlyError,
    TryAgainError,
)
from redis.retry import Retry

from nextoffer.cache.base import (
    CACHE_SETTING,
    CacheUnavailableError,
    check_prefix,
    check_ttl,
    safe_cache_url,
)
from nextoffer.domain.errors import ConfigError

T = TypeVar("T")

DEFAULT_RETRY_AFTER_S = 2.0
DEFAULT_CONNECT_TIMEOUT_S = 0.25
DEFAULT_SOCKET_TIMEOUT_S = 0.5
_SCAN_BATCH = 500

# The server is gone or not answering: stop talking to it for a while. MaxConnectionsError
# is a ConnectionError too, but means our own pool is exhausted, so it is handled apart.
_TRIPPING_ERRORS = (redis.ConnectionError, redis.TimeoutError)
# The server answers but cannot serve this call (read-only replica after a failover, out of
# memory, cluster resharding): the call fails, yet other calls may work, so no trip.
_FAILING_ERRORS = (
    MaxConnectionsError,
    ReadOnlyError,
    OutOfMemoryError,
    ClusterDownError,
    TryAgainError,
    InvalidResponse,
)
_GLOB_SPECIALS = frozenset("\\*?[]")


def _glob_escape(text: str) -> str:
    """`text` as a literal inside a Redis MATCH pattern."""
    return "".join(f"\\{ch}" if ch in _GLOB_SPECIALS else ch for ch in text)


def _ttl_ms(ttl_s: float | None) -> int | None:
    # Redis refuses PX 0; a sub-millisecond TTL still means "expire almost at once".
    return None if ttl_s is None else max(1, round(ttl_s * 1000))


def _text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def _secrets_in(url: str) -> list[str]:
    """The passwords written in `url`, to scrub from messages redis-py builds."""
    try:
        parts = urlsplit(url)
        found = [unquote(parts.password)] if parts.password else []
        found += [v for k, v in parse_qsl(parts.query) if k.lower().endswith("password") and v]
    except ValueError:
        return []
    return found


class RedisCache:
    """The cache on a Redis server; connects lazily, on the first call.

    After a connection error or timeout the breaker opens: for `retry_after_s` every call
    raises CacheUnavailableError at once, without touching the network. Then one call is let
    through to probe; if it succeeds the breaker closes, otherwise it stays open again.
    """

    def __init__(
        self,
        url: str,
        *,
        retry_after_s: float = DEFAULT_RETRY_AFTER_S,
        socket_connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT_S,
        max_connections: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name: str = "redis"
        self._target = safe_cache_url(url)
        self._secrets = _secrets_in(url)
        self._retry_after_s = retry_after_s
        self._clock = clock
        self._check_database(url)
        try:
            self._pool: redis.ConnectionPool = redis.ConnectionPool.from_url(
                url,
                decode_responses=True,
                socket_connect_timeout=socket_connect_timeout,
                socket_timeout=socket_timeout,
                max_connections=max_connections,
                # No retries inside redis-py: the breaker decides when to try again, and a
                # retry would multiply the time a request waits on a dead server.
                retry=Retry(NoBackoff(), 0),
            )
        except ValueError as exc:
            raise ConfigError(
                f"{CACHE_SETTING}: not a usable Redis URL ({self._scrub(str(exc))}): {self._target}"
            ) from None
        self._client = redis.Redis(connection_pool=self._pool)
        self._lock = threading.Lock()
        # Clock reading until which calls fail fast; None while the breaker is closed.
        self._open_until: float | None = None
        self._last_failure = ""

    def _check_database(self, url: str) -> None:
        # redis-py quietly falls back to database 0 when the path is not a number, which
        # would mix this cache into whatever else lives there.
        try:
            parts = urlsplit(url)
        except ValueError:
            return  # from_url rejects it with its own reason
        database = parts.path.strip("/")
        if parts.scheme in {"redis", "rediss"} and database and not database.isdecimal():
            raise ConfigError(
                f"{CACHE_SETTING}: the database in a Redis URL is a number, "
                f"got {database!r} in {self._target}"
            )

    @property
    def available(self) -> bool:
        """True while the breaker is closed: the last call that reached Redis succeeded."""
        with self._lock:
            return self._open_until is None

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _describe(self, exc: BaseException) -> str:
        lines = str(exc).strip().splitlines()
        return self._scrub(f"{type(exc).__name__}: {lines[0] if lines else 'no detail'}")

    def _admit(self) -> None:
        """Raise at once while the breaker is open; let one probe through once it is due."""
        with self._lock:
            if self._open_until is None:
                return
            now = self._clock()
            if now < self._open_until:
                raise CacheUnavailableError(
                    self._target,
                    f"{self._last_failure} (not retried for another "
                    f"{self._open_until - now:.2f} s)",
                )
            # This caller is the probe; pushing the deadline on keeps the others failing
            # fast instead of all piling onto a server that may still be down.
            self._open_until = now + self._retry_after_s

    def _run(self, operation: Callable[[], T]) -> T:
        self._admit()
        try:
            result = operation()
        except _FAILING_ERRORS as exc:
            raise CacheUnavailableError(self._target, self._describe(exc)) from None
        except _TRIPPING_ERRORS as exc:
            detail = self._describe(exc)
            with self._lock:
                self._open_until = self._clock() + self._retry_after_s
                self._last_failure = detail
            raise CacheUnavailableError(self._target, detail) from None
        with self._lock:
            self._open_until = None
        return result

    def get(self, key: str) -> str | None:
        """The value under `key`, or None when absent or expired."""
        return self._run(lambda: _text(self._client.get(key)))

    def mget(self, keys: Sequence[str]) -> list[str | None]:
        """The values under `keys`, in order, None for each absent or expired key."""
        if not keys:
            return []
        return self._run(lambda: [_text(v) for v in self._client.mget(list(keys))])

    def set(self, key: str, value: str, ttl_s: float | None = None) -> None:
        """Store `value` under `key`, replacing any value and TTL it had."""
        check_ttl(ttl_s)
        self._run(lambda: self._client.set(key, value, px=_ttl_ms(ttl_s)))

    def set_many(self, items: Mapping[str, str], ttl_s: float | None = None) -> None:
        """Store every item with the same TTL, in one pipelined round trip."""
        check_ttl(ttl_s)
        if not items:
            return
        px = _ttl_ms(ttl_s)

        def operation() -> None:
            # No MULTI: a transaction would block the server for the whole batch, and a
            # half-written batch is harmless in a cache.
            pipe = self._client.pipeline(transaction=False)
            for key, value in items.items():
                pipe.set(key, value, px=px)
            pipe.execute()

        self._run(operation)

    def delete(self, *keys: str) -> int:
        """Remove `keys`; the number that existed."""
        if not keys:
            return 0
        return self._run(lambda: int(self._client.unlink(*keys)))

    def delete_prefix(self, prefix: str) -> int:
        """Remove every key starting with `prefix`, by SCAN and batched UNLINK; never KEYS."""
        check_prefix(prefix)
        pattern = _glob_escape(prefix) + "*"

        def operation() -> int:
            removed = 0
            batch: list[str] = []
            for key in self._client.scan_iter(match=pattern, count=_SCAN_BATCH):
                batch.append(key)
                if len(batch) >= _SCAN_BATCH:
                    removed += int(self._client.unlink(*batch))
                    batch.clear()
            if batch:
                removed += int(self._client.unlink(*batch))
            return removed

        return self._run(operation)

    def keys_with_prefix(self, prefix: str) -> list[str]:
        """Every key starting with `prefix`, by SCAN; never KEYS."""
        check_prefix(prefix)
        pattern = _glob_escape(prefix) + "*"

        def operation() -> list[str]:
            return [str(k) for k in self._client.scan_iter(match=pattern, count=_SCAN_BATCH)]

        return self._run(operation)

    def incr(self, key: str, ttl_s: float, amount: int = 1) -> int:
        """Add `amount` to the counter under `key`; its TTL starts when it is created."""
        check_ttl(ttl_s)
        px = _ttl_ms(ttl_s)

        def operation() -> int:
            # SET NX PX then INCR in one MULTI: the TTL is set exactly when the counter is
            # born, and no crash between two round trips can leave a counter without one.
            pipe = self._client.pipeline(transaction=True)
            pipe.set(key, "0", px=px, nx=True)
            pipe.incrby(key, amount)
            _, count = pipe.execute()
            return int(count)

        try:
            return self._run(operation)
        except redis.ResponseError as exc:
            if "not an integer" in str(exc):
                raise ValueError(f"cache value under {key!r} is not an integer") from None
            raise

    def ping(self) -> bool:
        """True when Redis answers PING; False when it does not or the breaker is open."""
        try:
            return bool(self._run(self._client.ping))
        except (CacheUnavailableError, redis.RedisError, OSError):
            return False

    def close(self) -> None:
        """Close every pooled connection."""
        self._pool.disconnect()
