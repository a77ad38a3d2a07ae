"""Requests per minute per caller, counted in the shared cache (Redis when set)."""

from __future__ import annotations

import math
import time

from nextoffer.cache import Cache, CacheUnavailableError, keys
from nextoffer.cache.memory import MemoryCache
from nextoffer.domain.errors import RateLimitedError
from nextoffer.observe.metrics import ApiMetrics


class RateLimiter:
    """Fixed one-minute windows per caller, counted in the shared cache (Redis when set).

    When the shared cache is unreachable the counts fall back to this process, so limits
    keep working (per replica) instead of failing requests.
    """

    def __init__(self, cache: Cache, per_minute: int) -> None:
        self.cache = cache
        self.per_minute = per_minute
        self._local = MemoryCache(max_entries=50_000)

    def check(self, principal: str, metrics: ApiMetrics | None = None) -> None:
        """Count one request; raise RateLimitedError when over the limit."""
        if self.per_minute <= 0:
            return
        now = time.time()
        window = int(now // 60)
        key = keys.rate_limit(principal, window)
        try:
            count = self.cache.incr(key, 61)
        except CacheUnavailableError:
            count = self._local.incr(key, 61)
        if count > self.per_minute:
            if metrics is not None:
                metrics.rate_limited.inc()
            retry = max(1, math.ceil((window + 1) * 60 - now))
            raise RateLimitedError(
                f"over {self.per_minute} requests per minute; retry in {retry} s", retry
            )
