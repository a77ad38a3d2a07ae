"""Requests per minute per caller, counted in the shared cache (Redis when set)."""

from __future__ import annotations

import math
import time
from typing import NoReturn

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
        """Count one request; raise RateLimitedError when over the limit.

        A refused request still counts: a caller that keeps knocking stays refused.
        """
        if self.per_minute <= 0:
            return
        now = time.time()
        window = int(now // 60)
        key = keys.rate_limit(principal, window)
        count = self._add(key, 1)
        if count > self.per_minute:
            self._refuse(now, window, metrics, f"over {self.per_minute} requests per minute")

    def take(self, principal: str, n: int, metrics: ApiMetrics | None = None) -> None:
        """Count `n` more requests of a call already counted once by `check` (a batch).

        All or nothing: when the window's remaining allowance is below `n`, the `n` are
        given back (the call itself stays counted, as a refused request does) and
        RateLimitedError is raised, so a refused batch does not use up the allowance of
        the smaller calls after it. Between the count and the give-back, a concurrent
        request of the same caller may see the window fuller than it ends up.
        """
        if self.per_minute <= 0 or n <= 0:
            return
        now = time.time()
        window = int(now // 60)
        key = keys.rate_limit(principal, window)
        count = self._add(key, n)
        if count > self.per_minute:
            self._add(key, -n)
            used = count - n
            detail = (
                f"a batch of {n + 1} needs {n + 1} of the {self.per_minute} requests per "
                f"minute; {max(0, self.per_minute - used + 1)} were left"
            )
            if n + 1 > self.per_minute:
                detail += "; split the batch"
            self._refuse(now, window, metrics, detail)

    def _add(self, key: str, amount: int) -> int:
        try:
            return self.cache.incr(key, 61, amount)
        except CacheUnavailableError:
            return self._local.incr(key, 61, amount)

    def _refuse(self, now: float, window: int, metrics: ApiMetrics | None, detail: str) -> NoReturn:
        if metrics is not None:
            metrics.rate_limited.inc()
        retry = max(1, math.ceil((window + 1) * 60 - now))
        raise RateLimitedError(f"{detail}; retry in {retry} s", retry)
