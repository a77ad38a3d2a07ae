"""The `users` and `api_keys` tables: who logs in, which machine keys exist."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Insert, Select, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from nextoffer.domain.results import from_attributes
from nextoffer.store.reads._sql import Bind, connect, first_row, view_columns
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


_USER_COLUMNS = view_columns(User, UserRow)


def insert_user(engine: Engine, user: UserRow, password_hash: str) -> bool:
    """Store a new account; False when the username is taken, ignoring case.

    Two creations of one name racing are decided by the unique index: the loser gets False.
    """
    taken = select(User.username).where(func.lower(User.username) == user.username.lower())
    return _inserted(
        engine, insert(User).values(**asdict(user), password_hash=password_hash), taken
    )


def _inserted(engine: Engine, row: Insert, taken: Select[Any] | None = None) -> bool:
    """Insert one row in a transaction of its own; False when its key is already taken.

    `taken`, when given, finds a clash the constraints do not (a name in another case)
    before the insert; a clash on a unique constraint is caught from the database.
    """
    try:
        with engine.begin() as conn:
            if taken is not None and conn.execute(taken).first() is not None:
                return False
            conn.execute(row)
    except IntegrityError:
        return False
    return True


def list_users(bind: Bind) -> list[UserRow]:
    """Every account, disabled ones included, by username."""
    with connect(bind) as conn:
        rows = conn.execute(select(*_USER_COLUMNS).order_by(User.username))
        return [from_attributes(UserRow, r, disabled=bool) for r in rows]


def disable_user(engine: Engine, username: str) -> UserRow | None:
    """Disable an account (again is harmless) and return it; None when there is none."""
    with engine.begin() as conn:
        conn.execute(update(User).where(User.username == username).values(disabled=True))
        query = select(*_USER_COLUMNS).where(User.username == username)
        return first_row(conn, query, UserRow, disabled=bool)


def credentials(bind: Bind, username: str) -> Credentials | None:
    """The account's password hash, role and disabled flag; None for an unknown name."""
    query = select(*view_columns(User, Credentials)).where(User.username == username)
    return first_row(bind, query, Credentials, disabled=bool)


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


_KEY_COLUMNS = view_columns(ApiKey, ApiKeyRow)


def insert_api_key(engine: Engine, key: ApiKeyRow, key_hash: str) -> bool:
    """Store a new key; False when `key_id` is already taken (draw another id)."""
    return _inserted(engine, insert(ApiKey).values(**asdict(key), key_hash=key_hash))


def list_api_keys(bind: Bind) -> list[ApiKeyRow]:
    """Every key, revoked ones included, oldest first."""
    query = select(*_KEY_COLUMNS).order_by(ApiKey.created_at, ApiKey.key_id)
    with connect(bind) as conn:
        return [from_attributes(ApiKeyRow, r) for r in conn.execute(query)]


def revoke_api_key(engine: Engine, key_id: str, at: datetime) -> ApiKeyRow | None:
    """Revoke a key at `at` (a revoked key keeps its first time); None when there is none."""
    with engine.begin() as conn:
        conn.execute(
            update(ApiKey)
            .where(ApiKey.key_id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        return first_row(conn, select(*_KEY_COLUMNS).where(ApiKey.key_id == key_id), ApiKeyRow)


def key_secret(bind: Bind, key_id: str) -> KeySecret | None:
    """The key's hash, role and revocation time; None for an unknown id."""
    query = select(*view_columns(ApiKey, KeySecret)).where(ApiKey.key_id == key_id)
    return first_row(bind, query, KeySecret)
