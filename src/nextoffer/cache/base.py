"""The cache protocol every backend follows, its error, and helpers the backends share."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlencode, urlsplit

from nextoffer.domain.errors import BackendUnavailableError

CACHE_SETTING = "NEXTOFFER_CACHE_URL"
_MASK = "***"


@runtime_checkable
class Cache(Protocol):
    """A string key/value cache with TTLs; memory and Redis behave the same.

    Every operation raises CacheUnavailableError when the backend cannot be reached, except
    `ping`, which answers False instead. A `ttl_s` must be a positive number of seconds;
    None keeps the entry until it is evicted or deleted.
    """

    name: str

    def get(self, key: str) -> str | None:
        """The value under `key`, or None when absent or expired."""
        ...

    def mget(self, keys: Sequence[str]) -> list[str | None]:
        """The values under `keys`, in order, None for each absent or expired key."""
        ...

    def set(self, key: str, value: str, ttl_s: float | None = None) -> None:
        """Store `value` under `key`, replacing any value and TTL it had."""
        ...

    def set_many(self, items: Mapping[str, str], ttl_s: float | None = None) -> None:
        """Store every item with the same TTL, in one round trip."""
        ...

    def delete(self, *keys: str) -> int:
        """Remove `keys`; the number that existed."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Remove every key starting with `prefix` (not empty); the number removed."""
        ...

    def keys_with_prefix(self, prefix: str) -> list[str]:
        """Every live key starting with `prefix` (not empty), in no particular order."""
        ...

    def incr(self, key: str, ttl_s: float, amount: int = 1) -> int:
        """Add `amount` (may be negative) to the counter under `key`, atomically; the new value.

        The TTL is set only when the counter is created, so the counter lives for a fixed
        window from its first increment (a rate limit window), not from its last one.
        """
        ...

    def ping(self) -> bool:
        """True when the backend answers; never raises."""
        ...

    def close(self) -> None:
        """Release connections and memory; the cache must not be used afterwards."""
        ...


class CacheUnavailableError(BackendUnavailableError):
    """The cache backend cannot be reached; callers may carry on without the cache."""

    def __init__(self, target: str, detail: str) -> None:
        super().__init__(CACHE_SETTING, target, detail)


def same_redis_database(first: str, second: str) -> bool:
    """True when two URLs name one database of one Redis server (host, port, db number)."""

    def where(url: str) -> tuple[str, str | None, int, str] | None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            return None
        return parts.scheme, parts.hostname, parts.port or 6379, parts.path.strip("/") or "0"

    found = where(first)
    return found is not None and found == where(second)


def safe_cache_url(url: str) -> str:
    """The URL with any password (in the user part or the query) masked, fit for messages."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, hostinfo = netloc.rpartition("@")
            user = userinfo.partition(":")[0]
            netloc = f"{user}:{_MASK}@{hostinfo}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode(
                [(k, _MASK if k.lower().endswith("password") else v) for k, v in pairs],
                safe="*",
            )
        if not netloc and "@" in url:
            # Credentials outside an authority part ("user:pw@host" with no scheme) are not
            # parsed as such, so nothing could be masked reliably.
            return "<unparseable URL>"
        scheme = f"{parts.scheme}:" if parts.scheme else ""
        # Built by hand: urlunsplit drops the "//" of unix:///path, which has an empty host.
        authority = f"//{netloc}" if url[len(scheme) :].startswith("//") else netloc
        return (
            f"{scheme}{authority}{parts.path}"
            + (f"?{query}" if query else "")
            + (f"#{parts.fragment}" if parts.fragment else "")
        )
    except ValueError:
        return "<unparseable URL>"


def check_ttl(ttl_s: float | None) -> None:
    """Reject a TTL that Redis would refuse, so both backends fail the same way."""
    if ttl_s is not None and not (math.isfinite(ttl_s) and ttl_s > 0):
        raise ValueError(f"cache TTL must be a positive number of seconds, got {ttl_s!r}")


def check_prefix(prefix: str) -> None:
    """Reject an empty prefix: it would wipe every key in the database."""
    if not prefix:
        raise ValueError("cache prefix must not be empty")
