"""User accounts for people: create, list and disable them, and check their passwords."""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from nextoffer.domain.errors import NotFoundError
from nextoffer.domain.roles import Role
from nextoffer.serving.accounts import (
    AccountError,
    DuplicateUserError,
    Principal,
    granted_role,
    stored_role,
    utcnow,
)
from nextoffer.store import Engine
from nextoffer.store import accounts as store

log = logging.getLogger(__name__)

USERNAME_PATTERN = re.compile(r"[A-Za-z0-9._@-]{3,64}")
PASSWORD_MIN = 12
# argon2 pre-hashes the password, so length costs little; the cap only stops absurd input.
PASSWORD_MAX = 1024


_hasher = PasswordHasher()


@dataclass(frozen=True)
class UserRecord:
    """A user account as listed: everything but the password hash."""

    user_id: str
    username: str
    role: Role
    disabled: bool
    created_at: datetime


def _user_record(row: store.UserRow) -> UserRecord:
    return UserRecord(
        user_id=row.user_id,
        username=row.username,
        role=stored_role(row.role) or Role.VIEWER,
        disabled=bool(row.disabled),
        created_at=row.created_at,
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
    granted = granted_role(role)
    check_username(username)
    _check_password(password)
    record = UserRecord(str(uuid.uuid4()), username, granted, False, utcnow())
    password_hash = _hasher.hash(password)
    row = store.UserRow(record.user_id, username, granted.value, False, record.created_at)
    created = store.insert_user(engine, row, password_hash)
    if not created:
        raise DuplicateUserError(f"username {username!r} is already taken")
    log.info("user created", extra={"username": username, "role": granted.value})
    return record


def list_users(engine: Engine) -> list[UserRecord]:
    """Every account, disabled ones included, by username."""
    return [_user_record(row) for row in store.list_users(engine)]


def disable_user(engine: Engine, username: str) -> UserRecord:
    """Disable an account (again is harmless) and return it; NotFoundError when there is none.

    Logins fail at once; tokens already issued stop working within a TokenVerifier's
    `cache_s` (at once for `decode_token` with an engine).
    """
    row = store.disable_user(engine, username)
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
    row = store.credentials(engine, username)
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
    role = stored_role(row.role)
    if role is None:
        return None
    if _hasher.check_needs_rehash(row.password_hash):
        store.set_password_hash(engine, username, _hasher.hash(password))
    return Principal("user", username, role)


def current_role(engine: Engine, username: str) -> Role | None:
    """The role the account has now, or None when it is gone or disabled."""
    row = store.credentials(engine, username)
    if row is None or row.disabled:
        return None
    return stored_role(row.role)
