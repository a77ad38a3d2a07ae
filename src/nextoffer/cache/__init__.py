"""The cache behind one protocol: in-process memory or Redis, chosen by NEXTOFFER_CACHE_URL."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from nextoffer.cache.base import CACHE_SETTING, Cache, CacheUnavailableError, safe_cache_url
from nextoffer.cache.memory import DEFAULT_MAX_ENTRIES, MemoryCache
from nextoffer.domain.errors import ConfigError

__all__ = ["Cache", "CacheUnavailableError", "MemoryCache", "make_cache"]

_REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})


def _memory_cache(url: str) -> MemoryCache:
    parts = urlsplit(url)
    if parts.netloc or parts.path not in {"", "/"} or parts.fragment:
        raise ConfigError(
            f"{CACHE_SETTING}: use memory:// or memory://?max_entries=N, "
            f"got {safe_cache_url(url)!r}"
        )
    max_entries = DEFAULT_MAX_ENTRIES
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name != "max_entries":
            raise ConfigError(
                f"{CACHE_SETTING}: unknown option {name!r} for memory://, only max_entries"
            )
        if not value.isascii() or not value.isdigit() or int(value) < 1:
            raise ConfigError(
                f"{CACHE_SETTING}: max_entries must be a positive integer, got {value!r}"
            )
        max_entries = int(value)
    return MemoryCache(max_entries)


def make_cache(url: str) -> Cache:
    """The cache for `url`: memory://[?max_entries=N], or redis://, rediss://, unix://.

    A Redis cache does not connect here, so the caller starts even while Redis is down;
    its calls raise CacheUnavailableError until Redis is back.
    """
    try:
        scheme = urlsplit(url).scheme
    except ValueError:
        scheme = ""
    if scheme == "memory":
        return _memory_cache(url)
    if scheme in _REDIS_SCHEMES:
        # Imported here: redis-py costs an embedded (memory://) API process about 10 MB.
        from nextoffer.cache.redis_cache import RedisCache

        return RedisCache(url)
    raise ConfigError(
        f"{CACHE_SETTING}: use memory://, redis://, rediss:// or unix://, "
        f"got {safe_cache_url(url)!r}"
    )
