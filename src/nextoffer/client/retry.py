"""When to retry: 429 and 503 after the server's Retry-After, else exponential backoff.

Attempts are bounded, every wait is jittered (so many clients refused together do not
come back together), and a wait the server asks for beyond `max_wait_s` is not waited:
the error is raised at once with the server's Retry-After on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from random import random as uniform

RETRY_STATUSES = frozenset({429, 503})


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date; None if absent.

    A date in the past is 0; a value that is neither form is None (ignored).
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT by definition
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts and how long between them.

    `max_attempts` counts the first try (1: never retry). Without a Retry-After the wait
    before retry n (1, 2, ...) is drawn from [0, min(cap_s, base_s * 2**(n-1))] (full
    jitter); with one, it is that many seconds plus up to `jitter_s`.
    """

    max_attempts: int = 4
    base_s: float = 0.5
    cap_s: float = 20.0
    max_wait_s: float = 60.0
    jitter_s: float = 0.5
    draw: Callable[[], float] = field(default=uniform, compare=False, repr=False)
    """A number in [0, 1): the jitter's source (fixed in tests)."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def wait_s(self, attempt: int, retry_after_s: float | None) -> float | None:
        """Seconds to wait before the next attempt after failed `attempt` (1-based); None: stop."""
        if attempt >= self.max_attempts:
            return None
        if retry_after_s is not None:
            if retry_after_s > self.max_wait_s:
                return None
            return retry_after_s + self.draw() * self.jitter_s
        return self.draw() * min(self.cap_s, self.base_s * 2.0 ** (attempt - 1))
