"""API keys for machines: create, list and revoke them, and check the ones presented."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from nextoffer.domain.errors import NotFoundError
from nextoffer.domain.roles import Role
from nextoffer.serving.accounts import (
    AccountError,
    Principal,
    TtlCache,
    granted_role,
    stored_role,
    utcnow,
)
from nextoffer.store import Engine
from nextoffer.store import accounts as store
from nextoffer.store.engine import is_database_down

log = logging.getLogger(__name__)

KEY_PREFIX = "nbo"
KEY_ID_HEX = 12
# `secrets.token_urlsafe(32)` is always 43 characters of the URL-safe base64 alphabet.
_KEY_PATTERN = re.compile(rf"{KEY_PREFIX}_([0-9a-f]{{{KEY_ID_HEX}}})_([A-Za-z0-9_-]{{43}})")
_KEY_NAME_MAX = 100


@dataclass(frozen=True)
class ApiKeyRecord:
    """An API key as listed: everything but its secret, which is never stored."""

    key_id: str
    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None

    @property
    def revoked(self) -> bool:
        """True once the key has been revoked."""
        return self.revoked_at is not None


def _key_digest(presented: str) -> str:
    # A key carries 256 random bits, so a fast hash is enough: there is no small space of
    # likely values to search, which is what slow password hashes defend against.
    return hashlib.sha256(presented.encode("utf-8")).hexdigest()


def _key_record(row: store.ApiKeyRow) -> ApiKeyRecord:
    return ApiKeyRecord(
        key_id=row.key_id,
        name=row.name,
        # Listing shows an unknown stored role as the least one; verification denies it.
        role=stored_role(row.role) or Role.VIEWER,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def create_api_key(engine: Engine, name: str, role: Role | str) -> tuple[ApiKeyRecord, str]:
    """Create a key; returns its record and the plaintext key, which exists only here.

    The key reads `nbo_<key_id>_<secret>`; only its SHA-256 is stored, so a lost key cannot
    be recovered, only revoked and replaced. Neither this nor anything else logs it.
    """
    granted = granted_role(role)
    name = name.strip() or f"{granted.value} key"
    if len(name) > _KEY_NAME_MAX:
        raise AccountError(f"key name is {len(name)} characters; at most {_KEY_NAME_MAX}")
    attempts = 3
    for attempt in range(1, attempts + 1):
        key_id = secrets.token_hex(KEY_ID_HEX // 2)
        plaintext = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        record = ApiKeyRecord(key_id, name, granted, utcnow(), None)
        row = store.ApiKeyRow(key_id, name, granted.value, record.created_at, None)
        stored = store.insert_api_key(engine, row, _key_digest(plaintext))
        if not stored:
            # 48-bit ids collide about never; draw again rather than fail if one does.
            if attempt == attempts:
                raise AccountError(f"no free key id after {attempts} draws")
            continue
        log.info("api key created", extra={"key_id": key_id, "role": granted.value})
        return record, plaintext
    raise AssertionError("unreachable")  # pragma: no cover


def list_api_keys(engine: Engine) -> list[ApiKeyRecord]:
    """Every key, revoked ones included, oldest first."""
    return [_key_record(row) for row in store.list_api_keys(engine)]


def revoke_api_key(engine: Engine, key_id: str) -> ApiKeyRecord:
    """Revoke a key (again is harmless) and return it; NotFoundError when there is none.

    Verifiers that cached the key accept it until their cache entry expires (`cache_s`).
    """
    row = store.revoke_api_key(engine, key_id, utcnow())
    if row is None:
        raise NotFoundError(f"no API key with id {key_id!r}")
    log.info("api key revoked", extra={"key_id": key_id})
    return _key_record(row)


class ApiKeyVerifier:
    """Checks presented API keys, remembering valid ones for `cache_s` seconds.

    The cache spares the database a query per request; the price is that a revocation takes
    effect within `cache_s` seconds in each process (call `clear()` to apply it at once in
    this one). Only valid keys are remembered, under the hash of the whole presented key, so
    a wrong secret for a cached key_id never matches an entry. `cache_s=0` turns caching off.
    While the database is down, a key verified earlier is accepted on its expired entry.
    """

    def __init__(
        self,
        engine: Engine,
        cache_s: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._cache: TtlCache[str, Principal] = TtlCache(cache_s, clock)

    def verify(self, presented: str) -> Principal | None:
        """The key's principal, or None for a malformed, unknown, wrong or revoked key."""
        match = _KEY_PATTERN.fullmatch(presented)
        if match is None:
            return None
        digest = _key_digest(presented)
        hit, cached = self._cache.get(digest)
        if hit:
            return cached
        key_id = match.group(1)
        try:
            row = store.key_secret(self._engine, key_id)
        except Exception as exc:
            known, last = self._cache.last(digest)
            if not known or not is_database_down(exc):
                raise
            # The database is down: a key valid when last checked stays valid until it can
            # be checked again, so cached answers are still served through an outage.
            log.debug("database unreachable; key %s accepted as last verified", key_id)
            return last
        role = None
        if (
            row is not None
            and row.revoked_at is None
            and hmac.compare_digest(row.key_hash.encode(), digest.encode())
        ):
            role = stored_role(row.role)
        if role is None:
            self._cache.discard(digest)
            return None
        principal = Principal("key", key_id, role)
        self._cache.put(digest, principal)
        return principal

    def clear(self) -> None:
        """Forget every cached key, e.g. right after a revocation in this process."""
        self._cache.clear()
