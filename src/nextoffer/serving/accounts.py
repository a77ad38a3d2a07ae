"""Who is calling: API keys for machines, user accounts and login tokens for people."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import logging
import os
import re
import secrets
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Generic, Literal, TypeVar

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, Row, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from nextoffer.config import Settings
from nextoffer.domain.errors import ConfigError, NextOfferError, NotFoundError
from nextoffer.domain.roles import Role, parse_role
from nextoffer.serving.events import is_database_down
from nextoffer.store.schema import ApiKey, User

log = logging.getLogger(__name__)

PrincipalKind = Literal["key", "user"]

KEY_PREFIX = "nbo"
KEY_ID_HEX = 12
# `secrets.token_urlsafe(32)` is always 43 characters of the URL-safe base64 alphabet.
_KEY_PATTERN = re.compile(rf"{KEY_PREFIX}_([0-9a-f]{{{KEY_ID_HEX}}})_([A-Za-z0-9_-]{{43}})")
_KEY_NAME_MAX = 100

USERNAME_PATTERN = re.compile(r"[A-Za-z0-9._@-]{3,64}")
PASSWORD_MIN = 12
# argon2 pre-hashes the password, so length costs little; the cap only stops absurd input.
PASSWORD_MAX = 1024

JWT_ISSUER = "nextoffer"
JWT_ALGORITHM = "HS256"
JWT_SECRET_MIN = 32
JWT_SECRET_SETTING = "NEXTOFFER_JWT_SECRET"  # noqa: S105 - a variable name, not a secret
_JWT_CLAIMS = ["sub", "role", "iat", "exp", "jti", "iss"]

_CACHE_MAX = 10_000

_hasher = PasswordHasher()


class AccountError(NextOfferError, ValueError):
    """A username, password, role or key name is not acceptable; the message says why."""


class DuplicateUserError(AccountError):
    """The username is already taken."""


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: an API key (id = key_id) or a user (id = username)."""

    kind: PrincipalKind
    id: str
    role: Role


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


@dataclass(frozen=True)
class UserRecord:
    """A user account as listed: everything but the password hash."""

    user_id: str
    username: str
    role: Role
    disabled: bool
    created_at: datetime


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _as_utc(value: datetime) -> datetime:
    # SQLite hands timezone-aware columns back naive; they were written in UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _role(value: Role | str) -> Role:
    if isinstance(value, Role):
        return value
    try:
        return parse_role(value)
    except ValueError as exc:
        raise AccountError(str(exc)) from None


def _stored_role(text: str) -> Role | None:
    # A role the code does not know (a hand-edited row) grants nothing rather than crash.
    try:
        return Role(text)
    except ValueError:
        log.warning("account with unknown role %r denied", text)
        return None


K = TypeVar("K")
V = TypeVar("V")


class _TtlCache(Generic[K, V]):
    """A small thread-safe dict whose entries expire `ttl_s` after they were put."""

    def __init__(self, ttl_s: float, clock: Callable[[], float]) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> tuple[bool, V | None]:
        """(True, value) for a live entry, (False, None) otherwise."""
        if self._ttl_s <= 0:
            return False, None
        with self._lock:
            entry = self._entries.get(key)
            # An expired entry is kept (until replaced, discarded or pruned) for `last`.
            if entry is None or entry[0] <= self._clock():
                return False, None
            return True, entry[1]

    def last(self, key: K) -> tuple[bool, V | None]:
        """(True, value) for the last value put, expired or not; (False, None) for none."""
        with self._lock:
            entry = self._entries.get(key)
            return (False, None) if entry is None else (True, entry[1])

    def discard(self, key: K) -> None:
        """Forget `key`, expired or not."""
        with self._lock:
            self._entries.pop(key, None)

    def put(self, key: K, value: V) -> None:
        """Keep `value` for `ttl_s` seconds (nothing when caching is off)."""
        if self._ttl_s <= 0:
            return
        now = self._clock()
        with self._lock:
            if len(self._entries) >= _CACHE_MAX:
                self._entries = {k: e for k, e in self._entries.items() if e[0] > now}
                while len(self._entries) >= _CACHE_MAX:
                    # Insertion order: the oldest entry goes first.
                    del self._entries[next(iter(self._entries))]
            self._entries[key] = (now + self._ttl_s, value)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._entries.clear()


# --- API keys -------------------------------------------------------------------------


def _key_digest(presented: str) -> str:
    # A key carries 256 random bits, so a fast hash is enough: there is no small space of
    # likely values to search, which is what slow password hashes defend against.
    return hashlib.sha256(presented.encode("utf-8")).hexdigest()


_KEY_COLUMNS = (ApiKey.key_id, ApiKey.name, ApiKey.role, ApiKey.created_at, ApiKey.revoked_at)


_KeyRow = Row[str, str, str, datetime, datetime | None]


def _key_record(row: _KeyRow) -> ApiKeyRecord:
    return ApiKeyRecord(
        key_id=row.key_id,
        name=row.name,
        # Listing shows an unknown stored role as the least one; verification denies it.
        role=_stored_role(row.role) or Role.VIEWER,
        created_at=_as_utc(row.created_at),
        revoked_at=_as_utc(row.revoked_at) if row.revoked_at is not None else None,
    )


def create_api_key(engine: Engine, name: str, role: Role | str) -> tuple[ApiKeyRecord, str]:
    """Create a key; returns its record and the plaintext key, which exists only here.

    The key reads `nbo_<key_id>_<secret>`; only its SHA-256 is stored, so a lost key cannot
    be recovered, only revoked and replaced. Neither this nor anything else logs it.
    """
    granted = _role(role)
    name = name.strip() or f"{granted.value} key"
    if len(name) > _KEY_NAME_MAX:
        raise AccountError(f"key name is {len(name)} characters; at most {_KEY_NAME_MAX}")
    attempts = 3
    for attempt in range(1, attempts + 1):
        key_id = secrets.token_hex(KEY_ID_HEX // 2)
        plaintext = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        record = ApiKeyRecord(key_id, name, granted, _utcnow(), None)
        try:
            with engine.begin() as conn:
                conn.execute(
                    insert(ApiKey).values(
                        key_id=key_id,
                        name=name,
                        role=granted.value,
                        key_hash=_key_digest(plaintext),
                        created_at=record.created_at,
                        revoked_at=None,
                    )
                )
        except IntegrityError:
            # 48-bit ids collide about never; draw again rather than fail if one does.
            if attempt == attempts:
                raise
            continue
        log.info("api key created", extra={"key_id": key_id, "role": granted.value})
        return record, plaintext
    raise AssertionError("unreachable")  # pragma: no cover


def list_api_keys(engine: Engine) -> list[ApiKeyRecord]:
    """Every key, revoked ones included, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(select(*_KEY_COLUMNS).order_by(ApiKey.created_at, ApiKey.key_id))
        return [_key_record(row) for row in rows]


def revoke_api_key(engine: Engine, key_id: str) -> ApiKeyRecord:
    """Revoke a key (again is harmless) and return it; NotFoundError when there is none.

    Verifiers that cached the key accept it until their cache entry expires (`cache_s`).
    """
    with engine.begin() as conn:
        conn.execute(
            update(ApiKey)
            .where(ApiKey.key_id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=_utcnow())
        )
        row = conn.execute(select(*_KEY_COLUMNS).where(ApiKey.key_id == key_id)).first()
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
        self._cache: _TtlCache[str, Principal] = _TtlCache(cache_s, clock)

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
            with self._engine.connect() as conn:
                row = conn.execute(
                    select(ApiKey.key_hash, ApiKey.role, ApiKey.revoked_at).where(
                        ApiKey.key_id == key_id
                    )
                ).first()
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
            role = _stored_role(row.role)
        if role is None:
            self._cache.discard(digest)
            return None
        principal = Principal("key", key_id, role)
        self._cache.put(digest, principal)
        return principal

    def clear(self) -> None:
        """Forget every cached key, e.g. right after a revocation in this process."""
        self._cache.clear()


# --- Users ----------------------------------------------------------------------------


_USER_COLUMNS = (User.user_id, User.username, User.role, User.disabled, User.created_at)


_UserRow = Row[str, str, str, bool, datetime]


def _user_record(row: _UserRow) -> UserRecord:
    return UserRecord(
        user_id=row.user_id,
        username=row.username,
        role=_stored_role(row.role) or Role.VIEWER,
        disabled=bool(row.disabled),
        created_at=_as_utc(row.created_at),
    )


def check_username(username: str) -> None:
    """AccountError unless `username` is 3–64 of A–Z a–z 0–9 . _ @ - (checked before prompts)."""
    if not USERNAME_PATTERN.fullmatch(username):
        raise AccountError(
            f"username {username!r}: use 3 to 64 characters from A-Z a-z 0-9 . _ @ -"
        )


def _check_password(password: str) -> None:
    if len(password) < PASSWORD_MIN:
        raise AccountError(f"password is {len(password)} characters; at least {PASSWORD_MIN}")
    if len(password) > PASSWORD_MAX:
        raise AccountError(f"password is {len(password)} characters; at most {PASSWORD_MAX}")


def create_user(engine: Engine, username: str, password: str, role: Role | str) -> UserRecord:
    """Create an account with an argon2id password hash.

    Usernames are 3–64 of A–Z a–z 0–9 . _ @ - and are unique ignoring case (so that "Admin"
    cannot pose as "admin"); passwords are at least 12 characters.
    """
    granted = _role(role)
    check_username(username)
    _check_password(password)
    record = UserRecord(str(uuid.uuid4()), username, granted, False, _utcnow())
    password_hash = _hasher.hash(password)
    taken = DuplicateUserError(f"username {username!r} is already taken")
    try:
        with engine.begin() as conn:
            clash = conn.execute(
                select(User.username).where(func.lower(User.username) == username.lower())
            ).first()
            if clash is not None:
                raise taken
            conn.execute(
                insert(User).values(
                    user_id=record.user_id,
                    username=username,
                    password_hash=password_hash,
                    role=granted.value,
                    disabled=False,
                    created_at=record.created_at,
                )
            )
    except IntegrityError:
        # Two creations of one name racing: the unique index decides, the loser gets this.
        raise taken from None
    log.info("user created", extra={"username": username, "role": granted.value})
    return record


def list_users(engine: Engine) -> list[UserRecord]:
    """Every account, disabled ones included, by username."""
    with engine.connect() as conn:
        rows = conn.execute(select(*_USER_COLUMNS).order_by(User.username))
        return [_user_record(row) for row in rows]


def disable_user(engine: Engine, username: str) -> UserRecord:
    """Disable an account (again is harmless) and return it; NotFoundError when there is none.

    Logins fail at once; tokens already issued stop working within a TokenVerifier's
    `cache_s` (at once for `decode_token` with an engine).
    """
    with engine.begin() as conn:
        conn.execute(update(User).where(User.username == username).values(disabled=True))
        row = conn.execute(select(*_USER_COLUMNS).where(User.username == username)).first()
    if row is None:
        raise NotFoundError(f"no user named {username!r}")
    log.info("user disabled", extra={"username": username})
    return _user_record(row)


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_hex(16))


def authenticate(engine: Engine, username: str, password: str) -> Principal | None:
    """The user's principal when the password is right and the account enabled, else None.

    An unknown username still costs one argon2 verification, so the time taken does not
    tell whether the account exists. A hash made with weaker parameters than today's is
    replaced on a successful login.
    """
    with engine.connect() as conn:
        row = conn.execute(
            select(User.password_hash, User.role, User.disabled).where(User.username == username)
        ).first()
    if row is None:
        with contextlib.suppress(VerificationError, InvalidHashError):
            _hasher.verify(_dummy_hash(), password)
        return None
    try:
        _hasher.verify(row.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    if row.disabled:
        return None
    role = _stored_role(row.role)
    if role is None:
        return None
    if _hasher.check_needs_rehash(row.password_hash):
        with engine.begin() as conn:
            conn.execute(
                update(User)
                .where(User.username == username)
                .values(password_hash=_hasher.hash(password))
            )
    return Principal("user", username, role)


def _current_role(engine: Engine, username: str) -> Role | None:
    """The role the account has now, or None when it is gone or disabled."""
    with engine.connect() as conn:
        row = conn.execute(
            select(User.role, User.disabled).where(User.username == username)
        ).first()
    if row is None or row.disabled:
        return None
    return _stored_role(row.role)


# --- Tokens ---------------------------------------------------------------------------


def issue_token(
    principal: Principal, secret: str, ttl_s: int, now: datetime | None = None
) -> tuple[str, int]:
    """A signed HS256 login token for a user and its lifetime in seconds.

    Claims: sub (username), role, iat, exp, jti (unique id), iss "nextoffer". Only users get
    tokens: a machine presents its API key on every request instead.
    """
    if principal.kind != "user":
        raise ValueError("login tokens are issued to users only, not to API keys")
    if ttl_s <= 0:
        raise ValueError(f"token lifetime must be positive, got {ttl_s}")
    issued = int((now or _utcnow()).timestamp())
    claims = {
        "sub": principal.id,
        "role": principal.role.value,
        "iat": issued,
        "exp": issued + ttl_s,
        "jti": uuid.uuid4().hex,
        "iss": JWT_ISSUER,
    }
    return jwt.encode(claims, secret, algorithm=JWT_ALGORITHM), ttl_s


def _token_claims(token: str, secret: str) -> Principal | None:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[JWT_ALGORITHM],
            issuer=JWT_ISSUER,
            options={"require": _JWT_CLAIMS},
        )
    except jwt.PyJWTError:
        return None
    subject, role_text = claims.get("sub"), claims.get("role")
    if not isinstance(subject, str) or not isinstance(role_text, str):
        return None
    role = _stored_role(role_text)
    return None if role is None else Principal("user", subject, role)


def decode_token(token: str, secret: str, engine: Engine | None = None) -> Principal | None:
    """The token's principal, or None when it is garbled, forged, expired or not ours.

    With an engine the account must also still exist and be enabled, and the role is the
    one it has now, so a demotion applies before the token expires.
    """
    principal = _token_claims(token, secret)
    if principal is None or engine is None:
        return principal
    role = _current_role(engine, principal.id)
    return None if role is None else Principal("user", principal.id, role)


class TokenVerifier:
    """Checks login tokens: signature and expiry each time, the account's state cached.

    The account lookup (exists, enabled, current role) is remembered per user for
    `cache_s` seconds, so disabling a user or changing their role takes effect within
    `cache_s` in each process. `cache_s=0` turns caching off. While the database is down,
    an expired entry still answers.
    """

    def __init__(
        self,
        engine: Engine,
        secret: str,
        cache_s: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._secret = secret
        self._accounts: _TtlCache[str, Role | None] = _TtlCache(cache_s, clock)

    def verify(self, token: str) -> Principal | None:
        """The caller, or None for a bad token or a missing or disabled account."""
        claimed = _token_claims(token, self._secret)
        if claimed is None:
            return None
        hit, role = self._accounts.get(claimed.id)
        if not hit:
            try:
                role = _current_role(self._engine, claimed.id)
            except Exception as exc:
                known, role = self._accounts.last(claimed.id)
                if not known or not is_database_down(exc):
                    raise
                # The database is down: the account state last read stands until it is back.
                return None if role is None else Principal("user", claimed.id, role)
            # Only reached with a correctly signed token, so the cache cannot be flooded
            # with made-up names.
            self._accounts.put(claimed.id, role)
        return None if role is None else Principal("user", claimed.id, role)

    def clear(self) -> None:
        """Forget every cached account state."""
        self._accounts.clear()


# --- Signing secret -------------------------------------------------------------------


def resolve_jwt_secret(settings: Settings) -> str:
    """The key that signs login tokens: the setting, or one generated once per machine.

    Without NEXTOFFER_JWT_SECRET a random key is created in VAR_DIR/secrets/jwt_secret
    (mode 0600) and read back afterwards, so tokens survive restarts and every worker
    process on the machine signs with the same key. Replicas on several machines need the
    setting.
    """
    if settings.jwt_secret:
        if len(settings.jwt_secret) < JWT_SECRET_MIN:
            raise ConfigError(
                f"{JWT_SECRET_SETTING}: must be at least {JWT_SECRET_MIN} characters "
                f"(got {len(settings.jwt_secret)}); e.g. the output of `openssl rand -hex 32`"
            )
        return settings.jwt_secret
    path = settings.var_dir / "secrets" / "jwt_secret"
    try:
        secret = _read_secret(path)
        if secret is None:
            _publish_secret(path, secrets.token_hex(64))
            secret = _read_secret(path)
    except OSError as exc:
        raise ConfigError(
            f"{JWT_SECRET_SETTING} is not set and {path} cannot be used: {exc.strerror}"
        ) from None
    if secret is None or len(secret) < JWT_SECRET_MIN:
        raise ConfigError(
            f"{path} holds no usable key (under {JWT_SECRET_MIN} characters); delete it to "
            f"generate a new one, or set {JWT_SECRET_SETTING}"
        )
    return secret


def _read_secret(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None


def _publish_secret(path: Path, secret: str) -> None:
    """Write `secret` to `path` unless another process got there first (then keep theirs)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Written whole to a private temporary file, then hard-linked into place: the link
    # fails if the file exists, so racing workers agree on one key and none reads a
    # half-written file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".jwt_secret.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(secret + "\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        except OSError:
            # A file system without hard links: create exclusively instead.
            _create_exclusive(path, secret)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _create_exclusive(path: Path, secret: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(secret + "\n")
