"""A queue in front of password hashing: at most N argon2 checks at once per process."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread

from nextoffer.domain.errors import BusyError
from nextoffer.observe.metrics import ApiMetrics, GaugeCollector, gauge

T = TypeVar("T")


class HashGate:
    """Runs password checks in worker threads, at most `limit` at a time.

    Each argon2 check takes about 64 MiB and a core for ~100 ms on purpose, so many logins
    at once would spike memory and starve answers. Callers beyond the limit wait their turn
    without holding a thread (the wait is asynchronous); one that waits longer than
    `wait_s` gets BusyError (a 503 with Retry-After). `in_flight` and `peak` are exported
    as gauges, so a test or an operator can see that the cap held.
    """

    def __init__(self, limit: int, wait_s: float) -> None:
        if limit < 1:
            raise ValueError(f"password hashing limit must be at least 1, got {limit}")
        self.limit = limit
        self.wait_s = wait_s
        self.in_flight = 0
        self.peak = 0
        self.waiting = 0
        self._slots = anyio.CapacityLimiter(limit)
        self._count = threading.Lock()

    async def run(self, check: Callable[..., T], *args: object) -> T:
        """`check(*args)` in a worker thread once a slot is free; BusyError after `wait_s`."""
        self.waiting += 1
        try:
            with anyio.fail_after(self.wait_s):
                await self._slots.acquire()
        except TimeoutError:
            raise BusyError(
                f"{self.limit} password checks are running and others wait; try again shortly",
                max(1, math.ceil(self.wait_s / 2)),
            ) from None
        finally:
            self.waiting -= 1
        try:
            with self._count:
                self.in_flight += 1
                self.peak = max(self.peak, self.in_flight)
            try:
                return await anyio.to_thread.run_sync(check, *args)
            finally:
                with self._count:
                    self.in_flight -= 1
        finally:
            self._slots.release()


def register_gate_gauges(metrics: ApiMetrics, gate: HashGate) -> None:
    """Export the gate's state: checks running now, the most ever at once, logins waiting."""
    metrics.add_live_collector(
        GaugeCollector(
            [
                (
                    "nextoffer_password_checks_in_flight",
                    "Password checks (argon2) running now in this API process.",
                    [],
                    lambda: gauge(gate.in_flight),
                ),
                (
                    "nextoffer_password_checks_in_flight_max",
                    "The most password checks this API process ever ran at once "
                    "(never above NEXTOFFER_LOGIN_HASH_CONCURRENCY).",
                    [],
                    lambda: gauge(gate.peak),
                ),
                (
                    "nextoffer_password_checks_waiting",
                    "Logins queued for a password check slot in this API process.",
                    [],
                    lambda: gauge(gate.waiting),
                ),
            ]
        )
    )
