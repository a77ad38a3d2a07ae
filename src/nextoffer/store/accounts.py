"""The `users` and `api_keys` tables: who logs in, which machine keys exist."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from nextoffer.store.reads._sql import Bind, connect
from nextoffer.store.schema import ApiKey, User


@dataclass(frozen=True)
class UserRow:
    """A stored account without its password hash; `role` as stored (may be unknown)."""

    user_id: str
    username: str
    role: str
    disabled: bool
    created_at: datetime


@dataclass(frozen=True)
class Credentials:
    """What a login is checked against."""

    password_hash: str
    role: str
    disabled: bool


_USER_COLUMNS = (User.user_id, User.username, User.role, User.disabled, User.created_at)


def _user(row: Any) -> UserRow:
    return UserRow(row.user_id, row.username, row.role, bool(row.disabled), row.created_at)


def insert_user(
    engine: Engine,
    *,
    user_id: str,
    username: str,
    password_hash: str,
    role: str,
    created_at: datetime,
) -> bool:
    """Store a new enabled account; False when the username is taken, ignoring case.

    Two creations of one name racing are decided by the unique index: the loser gets False.
    """
    try:
        with engine.begin() as conn:
            clash = conn.execute(
                select(User.username).where(func.lower(User.username) == username.lower())
            ).first()
            if clash is not None:
                return False
            conn.execute(
                insert(User).values(
                    user_id=user_id,
                    username=username,
                    password_hash=password_hash,
                    role=role,
                    disabled=False,
                    created_at=created_at,
                )
            )
    except IntegrityError:
        return False
    return True


def list_users(bind: Bind) -> list[UserRow]:
    """Every account, disabled ones included, by username."""
    with connect(bind) as conn:
        return [_user(r) for r in conn.execute(select(*_USER_COLUMNS).order_by(User.username))]


def disable_user(engine: Engine, username: str) -> UserRow | None:
    """Disable an account (again is harmless) and return it; None when there is none."""
    with engine.begin() as conn:
        conn.execute(update(User).where(User.username == username).values(disabled=True))
        row = conn.execute(select(*_USER_COLUMNS).where(User.username == username)).first()
    return None if row is None else _user(row)


def credentials(bind: Bind, username: str) -> Credentials | None:
    """The account's password hash, role and disabled flag; None for an unknown name."""
    query = select(User.password_hash, User.role, User.disabled).where(User.username == username)
    with connect(bind) as conn:
        row = conn.execute(query).first()
    return None if row is None else Credentials(row.password_hash, row.role, bool(row.disabled))


def set_password_hash(engine: Engine, username: str, password_hash: str) -> None:
    """Replace an account's password hash (a rehash with today's parameters)."""
    with engine.begin() as conn:
        conn.execute(
            update(User).where(User.username == username).values(password_hash=password_hash)
        )


@dataclass(frozen=True)
class ApiKeyRow:
    """A stored API key without its hash; `role` as stored (may be unknown)."""

    key_id: str
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class KeySecret:
    """What a presented key is checked against."""

    key_hash: str
    role: str
    revoked_at: datetime | None


_KEY_COLUMNS = (ApiKey.key_id, ApiKey.name, ApiKey.role, ApiKey.created_at, ApiKey.revoked_at)


def _key(row: Any) -> ApiKeyRow:
    return ApiKeyRow(row.key_id, row.name, row.role, row.created_at, row.revoked_at)


def insert_api_key(
    engine: Engine, *, key_id: str, name: str, role: str, key_hash: str, created_at: datetime
) -> bool:
    """Store a new key; False when `key_id` is already taken (draw another id)."""
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(ApiKey).values(
                    key_id=key_id,
                    name=name,
                    role=role,
                    key_hash=key_hash,
                    created_at=created_at,
                    revoked_at=None,
                )
            )
    except IntegrityError:
        return False
    return True


def list_api_keys(bind: Bind) -> list[ApiKeyRow]:
    """Every key, revoked ones included, oldest first."""
    query = select(*_KEY_COLUMNS).order_by(ApiKey.created_at, ApiKey.key_id)
    with connect(bind) as conn:
        return [_key(r) for r in conn.execute(query)]


def revoke_api_key(engine: Engine, key_id: str, at: datetime) -> ApiKeyRow | None:
    """Revoke a key at `at` (a revoked key keeps its first time); None when there is none."""
    with engine.begin() as conn:
        conn.execute(
            update(ApiKey)
            .where(ApiKey.key_id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        row = conn.execute(select(*_KEY_COLUMNS).where(ApiKey.key_id == key_id)).first()
    return None if row is None else _key(row)


def key_secret(bind: Bind, key_id: str) -> KeySecret | None:
    """The key's hash, role and revocation time; None for an unknown id."""
    query = select(ApiKey.key_hash, ApiKey.role, ApiKey.revoked_at).where(ApiKey.key_id == key_id)
    with connect(bind) as conn:
        row = conn.execute(query).first()
    return None if row is None else KeySecret(row.key_hash, row.role, row.revoked_at)
