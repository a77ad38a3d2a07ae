"""Wrong-password backoff per (username, address), username and address, in the shared cache."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from nextoffer.cache import Cache, CacheUnavailableError, keys
from nextoffer.cache.memory import MemoryCache
from nextoffer.domain.errors import RateLimitedError

# Failures are remembered for a day from the first one; a success forgets the pair's.
FAILURE_WINDOW_S = 86_400
# A pair that logged in successfully is "known" for 30 days: the looser username-wide and
# address-wide locks never apply to it, so no one can lock a person out of their own usual
# address by guessing elsewhere.
KNOWN_PAIR_S = 30 * 86_400

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """After `free` failures, a lock of 1 s doubling with each further failure up to `cap_s`."""

    free: int
    cap_s: int

    def lock_s(self, failures: int) -> int:
        """How long to lock after the `failures`-th failure (0: not yet)."""
        over = failures - self.free
        if over <= 0:
            return 0
        # 2**60 s is beyond any cap: stop doubling before the number grows without end.
        return int(min(self.cap_s, 2 ** min(over - 1, 60)))


class LoginThrottle:
    """Locks out password guessing without letting anyone lock out others.

    Three scopes, each with its own failure count and backoff:
    - the pair (username, address): `free` failures, then 1 s doubling up to `cap_s`;
    - the username, from any address: 4 x `free` failures, capped at one minute, so a
      distributed guesser is slowed while no one can lock a named user out for long;
    - the address, for any username: 10 x `free` failures, capped like the pair, so one
      address cannot spray passwords over many usernames.
    The username and address locks spare pairs that logged in successfully lately, so a
    person keeps getting in from their usual address while someone guesses elsewhere, and
    colleagues behind one address are not locked out by one of them.

    State lives in the shared cache (Redis when configured) so every replica sees it; while
    the cache is unreachable it falls back to this process. Locks hold a wall-clock time, so
    replicas agree on when they end.
    """

    def __init__(
        self,
        cache: Cache,
        *,
        free: int = 5,
        cap_s: int = 900,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cache = cache
        self.clock = clock
        self.scopes = {
            "pair": Backoff(free, cap_s),
            "user": Backoff(4 * free, min(cap_s, 60)),
            "addr": Backoff(10 * free, cap_s),
        }
        self._local = MemoryCache(max_entries=50_000)

    def check(self, username: str, address: str) -> None:
        """RateLimitedError (with the seconds to wait) when this login must not be tried now."""
        subjects = self._subjects(username, address)
        lock_keys = [keys.login_throttle(f"{scope}-lock", s) for scope, s in subjects.items()]
        known_key = keys.login_throttle("known", subjects["pair"])
        values = self._call(lambda c: c.mget([*lock_keys, known_key]))
        *locks, known = values
        now = self.clock()
        waits = []
        for (scope, _), until in zip(subjects.items(), locks, strict=True):
            if until is None or (scope != "pair" and known is not None):
                continue
            left = float(until) - now
            if left > 0:
                waits.append(left)
        if waits:
            wait = max(1, math.ceil(max(waits)))
            raise RateLimitedError(f"too many wrong passwords; try again in {wait} s", wait)

    def failed(self, username: str, address: str) -> None:
        """Count a wrong password in every scope and lock those over their allowance."""
        now = self.clock()
        for scope, subject in self._subjects(username, address).items():
            failures = self._incr(keys.login_throttle(f"{scope}-fails", subject))
            lock_s = self.scopes[scope].lock_s(failures)
            if lock_s:
                self._set(keys.login_throttle(f"{scope}-lock", subject), str(now + lock_s), lock_s)

    def succeeded(self, username: str, address: str) -> None:
        """Forget the pair's failures and remember it as known (username-wide counts stay)."""
        pair = self._subjects(username, address)["pair"]
        self._call(
            lambda c: c.delete(
                keys.login_throttle("pair-fails", pair), keys.login_throttle("pair-lock", pair)
            )
        )
        self._call(lambda c: c.set(keys.login_throttle("known", pair), "1", KNOWN_PAIR_S))

    def _subjects(self, username: str, address: str) -> dict[str, str]:
        # Digests, not the raw text: a key stays short and one line whatever was typed, and
        # usernames that were guessed are not listed in the cache.
        user = username.strip().lower()
        return {
            "pair": _digest(f"{user}\0{address}"),
            "user": _digest(user),
            "addr": _digest(address),
        }

    def _incr(self, key: str) -> int:
        return self._call(lambda cache: cache.incr(key, FAILURE_WINDOW_S))

    def _set(self, key: str, value: str, lock_s: int) -> None:
        # Kept a second past the lock: the value, not the TTL, says when the lock ends.
        self._call(lambda cache: cache.set(key, value, lock_s + 1))

    def _call(self, operation: Callable[[Cache], T]) -> T:
        try:
            return operation(self.cache)
        except CacheUnavailableError:
            return operation(self._local)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]
