"""Accounts: API keys, users, login tokens and the signing secret, on SQLite and PostgreSQL.

Also the `nextoffer keys` and `nextoffer users` commands, run in-process.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine, event, select, update
from typer.testing import CliRunner, Result

from nextoffer.cli import app
from nextoffer.config import Settings
from nextoffer.domain.errors import ConfigError, NextOfferError, NotFoundError
from nextoffer.domain.roles import Role
from nextoffer.serving.accounts import AccountError, DuplicateUserError, Principal
from nextoffer.serving.api_keys import (
    ApiKeyVerifier,
    create_api_key,
    list_api_keys,
    revoke_api_key,
)
from nextoffer.serving.tokens import TokenVerifier, decode_token, issue_token, resolve_jwt_secret
from nextoffer.serving.users import authenticate, create_user, disable_user, list_users
from nextoffer.store.engine import make_engine
from nextoffer.store.migrate import upgrade
from nextoffer.store.schema import ApiKey, User

SECRET = "s" * 16 + "0123456789abcdef" * 3
PASSWORD = "correct horse battery"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A migrated database."""
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def count_queries(engine: Engine) -> list[str]:
    """Statements run on `engine` from now on."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])

    event.listen(engine, "before_cursor_execute", record)
    return seen


# --- API keys ---------------------------------------------------------------------------


def test_created_key_verifies_with_its_role(engine: Engine) -> None:
    record, plaintext = create_api_key(engine, "crm export", Role.WRITER)

    prefix, key_id, secret = plaintext.split("_", 2)
    assert prefix == "nbo" and key_id == record.key_id and len(key_id) == 12
    assert int(key_id, 16) >= 0 and len(secret) == 43
    assert record.name == "crm export" and record.role is Role.WRITER and not record.revoked
    principal = ApiKeyVerifier(engine, cache_s=0).verify(plaintext)
    assert principal == Principal("key", record.key_id, Role.WRITER)


def test_wrong_unknown_and_malformed_keys_are_refused(engine: Engine) -> None:
    record, plaintext = create_api_key(engine, "ci", "viewer")
    other = ApiKeyVerifier(engine, cache_s=0)
    _, _, secret = plaintext.split("_", 2)
    wrong_secret = f"nbo_{record.key_id}_{secret[::-1]}"
    unknown_id = f"nbo_{'0' * 12}_{secret}"

    assert other.verify(wrong_secret) is None
    assert other.verify(unknown_id) is None
    assert other.verify(plaintext + "x") is None
    assert other.verify(plaintext.upper()) is None


@pytest.mark.parametrize(
    "presented",
    ["", "nbo_", "nbo_abc_def", "Bearer nbo_x", "x" * 5000, "nbo_0123456789ab_short"],
)
def test_malformed_keys_are_refused_without_a_query(engine: Engine, presented: str) -> None:
    verifier = ApiKeyVerifier(engine)
    queries = count_queries(engine)

    assert verifier.verify(presented) is None
    assert queries == []


def test_valid_keys_are_cached_and_wrong_ones_never_are(engine: Engine) -> None:
    record, plaintext = create_api_key(engine, "app", Role.OPERATOR)
    clock = Clock()
    verifier = ApiKeyVerifier(engine, cache_s=30, clock=clock)
    assert verifier.verify(plaintext) is not None
    queries = count_queries(engine)

    assert verifier.verify(plaintext) == Principal("key", record.key_id, Role.OPERATOR)
    assert queries == []
    # Same key_id, wrong secret: looked up and refused, not served from the cache.
    forged = plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")
    assert verifier.verify(forged) is None
    assert verifier.verify(forged) is None
    assert len(queries) == 2


def test_revocation_applies_when_the_cache_entry_expires(engine: Engine) -> None:
    record, plaintext = create_api_key(engine, "app", Role.ADMIN)
    clock = Clock()
    cached = ApiKeyVerifier(engine, cache_s=30, clock=clock)
    uncached = ApiKeyVerifier(engine, cache_s=0)
    assert cached.verify(plaintext) is not None

    revoked = revoke_api_key(engine, record.key_id)

    assert revoked.revoked and revoked.revoked_at is not None
    assert uncached.verify(plaintext) is None
    assert cached.verify(plaintext) is not None  # within cache_s: still accepted
    clock.now += 30.001
    assert cached.verify(plaintext) is None


def test_clear_applies_a_revocation_at_once(engine: Engine) -> None:
    record, plaintext = create_api_key(engine, "app", Role.ADMIN)
    verifier = ApiKeyVerifier(engine, cache_s=3600)
    assert verifier.verify(plaintext) is not None

    revoke_api_key(engine, record.key_id)
    verifier.clear()

    assert verifier.verify(plaintext) is None


def test_revoking_twice_keeps_the_first_time_and_unknown_ids_are_not_found(
    engine: Engine,
) -> None:
    record, _ = create_api_key(engine, "app", Role.VIEWER)
    first = revoke_api_key(engine, record.key_id)

    assert revoke_api_key(engine, record.key_id).revoked_at == first.revoked_at
    with pytest.raises(NotFoundError, match="nope"):
        revoke_api_key(engine, "nope")


def test_the_plaintext_key_is_not_stored(engine: Engine) -> None:
    record, plaintext = create_api_key(engine, "secret keeper", Role.ADMIN)
    secret = plaintext.split("_", 2)[2]

    with engine.connect() as conn:
        row = conn.execute(select(ApiKey).where(ApiKey.key_id == record.key_id)).one()
    stored = " ".join(str(value) for value in row._mapping.values())
    assert plaintext not in stored and secret not in stored
    assert len(row.key_hash) == 64 and row.key_hash != plaintext


def test_keys_are_listed_oldest_first_with_revocations(engine: Engine) -> None:
    first, _ = create_api_key(engine, "one", Role.VIEWER)
    second, _ = create_api_key(engine, "  ", "writer")
    revoke_api_key(engine, first.key_id)

    keys = list_api_keys(engine)

    assert [k.key_id for k in keys] == [first.key_id, second.key_id]
    assert keys[0].revoked and not keys[1].revoked
    assert keys[1].name == "writer key"
    assert keys[1].created_at.tzinfo is not None


def test_bad_key_role_or_name_is_an_account_error(engine: Engine) -> None:
    with pytest.raises(AccountError, match="valid roles: viewer, writer, operator, admin"):
        create_api_key(engine, "x", "root")
    with pytest.raises(AccountError, match="at most 100"):
        create_api_key(engine, "n" * 101, Role.VIEWER)
    assert list_api_keys(engine) == []


# --- users ------------------------------------------------------------------------------


def test_user_create_and_authenticate(engine: Engine) -> None:
    record = create_user(engine, "ana.lopez@ops", PASSWORD, Role.OPERATOR)

    assert record.username == "ana.lopez@ops" and record.role is Role.OPERATOR
    assert not record.disabled and len(record.user_id) == 36
    assert authenticate(engine, "ana.lopez@ops", PASSWORD) == Principal(
        "user", "ana.lopez@ops", Role.OPERATOR
    )
    assert authenticate(engine, "ana.lopez@ops", PASSWORD + "!") is None
    assert authenticate(engine, "ANA.LOPEZ@ops", PASSWORD) is None
    assert authenticate(engine, "nobody", PASSWORD) is None
    assert [u.username for u in list_users(engine)] == ["ana.lopez@ops"]


def test_password_is_stored_as_an_argon2id_hash(engine: Engine) -> None:
    create_user(engine, "bob", PASSWORD, Role.VIEWER)

    with engine.connect() as conn:
        stored = conn.execute(select(User.password_hash).where(User.username == "bob")).scalar()
    assert isinstance(stored, str)
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored


def test_disabled_users_cannot_log_in(engine: Engine) -> None:
    create_user(engine, "carol", PASSWORD, Role.ADMIN)

    record = disable_user(engine, "carol")

    assert record.disabled
    assert authenticate(engine, "carol", PASSWORD) is None
    assert [u.disabled for u in list_users(engine)] == [True]
    assert disable_user(engine, "carol").disabled  # again: harmless
    with pytest.raises(NotFoundError, match="dave"):
        disable_user(engine, "dave")


def test_weak_hashes_are_upgraded_on_login(engine: Engine) -> None:
    create_user(engine, "erin", PASSWORD, Role.VIEWER)
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
    with engine.begin() as conn:
        conn.execute(update(User).where(User.username == "erin").values(password_hash=weak))

    assert authenticate(engine, "erin", PASSWORD) is not None

    with engine.connect() as conn:
        stored = conn.execute(select(User.password_hash).where(User.username == "erin")).scalar()
    assert stored != weak and isinstance(stored, str)
    assert not PasswordHasher().check_needs_rehash(stored)
    assert authenticate(engine, "erin", PASSWORD) is not None


@pytest.mark.parametrize(
    ("username", "password", "message"),
    [
        ("ab", PASSWORD, "3 to 64 characters"),
        ("u" * 65, PASSWORD, "3 to 64 characters"),
        ("with space", PASSWORD, "3 to 64 characters"),
        ("semi;colon", PASSWORD, "3 to 64 characters"),
        ("fine_name", "short", "at least 12"),
        ("fine_name", "x" * 11, "at least 12"),
    ],
)
def test_bad_usernames_and_passwords_are_refused(
    engine: Engine, username: str, password: str, message: str
) -> None:
    with pytest.raises(AccountError, match=message):
        create_user(engine, username, password, Role.VIEWER)
    assert list_users(engine) == []


def test_duplicate_usernames_are_refused_ignoring_case(engine: Engine) -> None:
    create_user(engine, "frank", PASSWORD, Role.VIEWER)

    for name in ("frank", "Frank"):
        with pytest.raises(DuplicateUserError, match="already taken"):
            create_user(engine, name, PASSWORD, Role.ADMIN)
    assert issubclass(DuplicateUserError, NextOfferError)
    assert issubclass(DuplicateUserError, ValueError)
    assert [u.role for u in list_users(engine)] == [Role.VIEWER]


# --- tokens -----------------------------------------------------------------------------


def test_token_round_trip_has_the_documented_claims() -> None:
    principal = Principal("user", "gina", Role.WRITER)
    now = datetime.now(UTC)

    token, expires_in = issue_token(principal, SECRET, 900, now=now)

    assert expires_in == 900
    assert decode_token(token, SECRET) == principal
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], issuer="nextoffer")
    assert set(claims) == {"sub", "role", "iat", "exp", "jti", "iss"}
    assert claims["sub"] == "gina" and claims["role"] == "writer"
    assert claims["exp"] - claims["iat"] == 900 and claims["iat"] == int(now.timestamp())
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    second, _ = issue_token(principal, SECRET, 900, now=now)
    assert jwt.decode(second, SECRET, algorithms=["HS256"])["jti"] != claims["jti"]


def test_expired_token_is_refused() -> None:
    principal = Principal("user", "gina", Role.ADMIN)
    past = datetime.now(UTC) - timedelta(hours=1)

    token, _ = issue_token(principal, SECRET, 900, now=past)

    assert decode_token(token, SECRET) is None


def _with_payload(token: str, **changes: Any) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    raw = json.dumps(claims, separators=(",", ":")).encode()
    return ".".join([header, base64.urlsafe_b64encode(raw).rstrip(b"=").decode(), signature])


def test_tampered_forged_and_garbled_tokens_are_refused() -> None:
    token, _ = issue_token(Principal("user", "hal", Role.VIEWER), SECRET, 900)
    header, payload, signature = token.split(".")
    middle = len(signature) // 2
    flipped = signature[:middle] + ("A" if signature[middle] != "A" else "B")
    flipped += signature[middle + 1 :]
    claims: dict[str, Any] = {"sub": "hal", "role": "admin", "iss": "nextoffer", "jti": "x"}
    now = int(datetime.now(UTC).timestamp())
    claims |= {"iat": now, "exp": now + 900}

    assert decode_token(_with_payload(token, role="admin"), SECRET) is None
    assert decode_token(".".join([header, payload, flipped]), SECRET) is None
    assert decode_token(token, SECRET[::-1]) is None
    assert decode_token(jwt.encode(claims, "other" * 8, algorithm="HS256"), SECRET) is None
    unsigned = jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]
    assert decode_token(unsigned, SECRET) is None
    assert decode_token(jwt.encode(claims | {"iss": "else"}, SECRET), SECRET) is None
    missing_jti = {k: v for k, v in claims.items() if k != "jti"}
    assert decode_token(jwt.encode(missing_jti, SECRET), SECRET) is None
    assert decode_token(jwt.encode(claims | {"role": "root"}, SECRET), SECRET) is None
    for garbage in ("", "abc", "a.b.c", token + "x"):
        assert decode_token(garbage, SECRET) is None


def test_tokens_are_for_users_only() -> None:
    with pytest.raises(ValueError, match="users only"):
        issue_token(Principal("key", "0123456789ab", Role.ADMIN), SECRET, 900)


def test_disabled_users_tokens_are_refused(engine: Engine) -> None:
    create_user(engine, "ivan", PASSWORD, Role.OPERATOR)
    principal = authenticate(engine, "ivan", PASSWORD)
    assert principal is not None
    token, _ = issue_token(principal, SECRET, 900)
    verifier = TokenVerifier(engine, SECRET, cache_s=0)
    assert verifier.verify(token) == principal
    assert decode_token(token, SECRET, engine) == principal

    disable_user(engine, "ivan")

    assert verifier.verify(token) is None
    assert decode_token(token, SECRET, engine) is None
    assert decode_token(token, SECRET) == principal  # the signature alone is still fine


def test_token_verifier_caches_the_account_state(engine: Engine) -> None:
    create_user(engine, "judy", PASSWORD, Role.WRITER)
    token, _ = issue_token(Principal("user", "judy", Role.WRITER), SECRET, 900)
    ghost, _ = issue_token(Principal("user", "ghost", Role.ADMIN), SECRET, 900)
    clock = Clock()
    verifier = TokenVerifier(engine, SECRET, cache_s=30, clock=clock)
    assert verifier.verify(token) is not None
    assert verifier.verify(ghost) is None  # signed by us, but no such account

    disable_user(engine, "judy")

    assert verifier.verify(token) is not None  # within cache_s
    clock.now += 31
    assert verifier.verify(token) is None
    assert verifier.verify(token + "x") is None


# --- signing secret ---------------------------------------------------------------------


def test_generated_jwt_secret_is_a_private_file_reused_afterwards(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var", jwt_secret="")

    first = resolve_jwt_secret(settings)
    second = resolve_jwt_secret(Settings(var_dir=tmp_path / "var", jwt_secret=""))

    path = tmp_path / "var" / "secrets" / "jwt_secret"
    assert first == second == path.read_text().strip()
    assert len(first) == 128 and int(first, 16) >= 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["jwt_secret"]  # no temporary left
    token, _ = issue_token(Principal("user", "kim", Role.VIEWER), first, 60)
    assert decode_token(token, second) is not None


def test_configured_jwt_secret_is_used_and_must_be_long(tmp_path: Path) -> None:
    # SECRET is a repeated pattern, refused at start (tests/integration/test_login_throttle.py).
    configured = "k3V9qZ2mX7pL4wR8tY1uN6bH0cJ5dF2g"
    assert resolve_jwt_secret(Settings(var_dir=tmp_path, jwt_secret=configured)) == configured
    assert not (tmp_path / "secrets").exists()
    with pytest.raises(ConfigError, match=r"NEXTOFFER_JWT_SECRET.*at least 32"):
        resolve_jwt_secret(Settings(var_dir=tmp_path, jwt_secret="short"))


def test_unusable_secret_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "jwt_secret"
    path.parent.mkdir()
    path.write_text("tiny\n")

    with pytest.raises(ConfigError, match="delete it"):
        resolve_jwt_secret(Settings(var_dir=tmp_path, jwt_secret=""))


# --- CLI --------------------------------------------------------------------------------


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """NEXTOFFER_* pointing at a migrated database; the logging setup is put back after."""
    for name in list(os.environ):
        if name.startswith("NEXTOFFER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NEXTOFFER_DATABASE_URL", database_url)
    monkeypatch.setenv("NEXTOFFER_VAR_DIR", str(tmp_path / "var"))
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()
    root.handlers[:] = handlers
    root.setLevel(level)


def invoke(*args: str, stdin: str | None = None) -> Result:
    """Run `nextoffer ...` in-process; stdout and stderr are kept apart."""
    return CliRunner().invoke(app, list(args), input=stdin)


def assert_one_line_error(result: Result, *needles: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_cli_keys_create_list_revoke(cli_env: Engine) -> None:
    created = invoke("keys", "create", "--role", "operator", "--name", "batch jobs")
    assert created.exit_code == 0, created.output
    plaintext = created.stdout.strip()
    assert "\n" not in plaintext
    assert "will not be shown again" in created.stderr
    assert plaintext not in created.stderr  # printed once, never logged
    principal = ApiKeyVerifier(cli_env, cache_s=0).verify(plaintext)
    assert principal is not None and principal.role is Role.OPERATOR
    key_id = principal.id

    listed = invoke("keys", "list")
    assert listed.exit_code == 0, listed.output
    assert key_id in listed.stdout and "batch jobs" in listed.stdout
    assert "operator" in listed.stdout
    assert plaintext.split("_", 2)[2] not in listed.output

    revoked = invoke("keys", "revoke", key_id)
    assert revoked.exit_code == 0, revoked.output
    assert f"revoked {key_id}" in revoked.stdout
    assert ApiKeyVerifier(cli_env, cache_s=0).verify(plaintext) is None
    assert list_api_keys(cli_env)[0].revoked


def test_cli_keys_errors_are_one_line(cli_env: Engine) -> None:
    assert_one_line_error(invoke("keys", "create", "--role", "root"), "--role", "admin")
    assert_one_line_error(invoke("keys", "revoke", "0123456789ab"), "0123456789ab")
    empty = invoke("keys", "list")
    assert empty.exit_code == 0 and "none yet" in empty.stdout


def test_cli_users_create_with_password_on_stdin(cli_env: Engine) -> None:
    result = invoke(
        "users", "create", "lena", "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n"
    )

    assert result.exit_code == 0, result.output
    assert "created lena" in result.stdout
    assert PASSWORD not in result.output
    assert authenticate(cli_env, "lena", PASSWORD) == Principal("user", "lena", Role.ADMIN)

    listed = invoke("users", "list")
    assert listed.exit_code == 0 and "lena" in listed.stdout and "active" in listed.stdout
    disabled = invoke("users", "disable", "lena")
    assert disabled.exit_code == 0, disabled.output
    assert authenticate(cli_env, "lena", PASSWORD) is None
    assert "disabled" in invoke("users", "list").stdout


def test_cli_users_create_prompts_twice_when_no_stdin_flag(cli_env: Engine) -> None:
    result = invoke("users", "create", "mia", "--role", "viewer", stdin=f"{PASSWORD}\n" * 2)

    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert authenticate(cli_env, "mia", PASSWORD) is not None


def test_cli_users_errors_are_one_line(cli_env: Engine) -> None:
    short = invoke("users", "create", "nora", "--role", "viewer", "--password-stdin", stdin="x\n")
    assert_one_line_error(short, "at least 12")
    create_user(cli_env, "nora", PASSWORD, Role.VIEWER)
    again = invoke(
        "users", "create", "NORA", "--role", "viewer", "--password-stdin", stdin=PASSWORD
    )
    assert_one_line_error(again, "already taken")
    assert_one_line_error(invoke("users", "disable", "nobody"), "nobody")
    bad_name = invoke("users", "create", "a b", "--role", "viewer")
    assert_one_line_error(bad_name, "3 to 64")
    assert "password" not in bad_name.stdout  # refused before asking for one
    assert_one_line_error(
        invoke("users", "create", "olga", "--role", "boss", "--password-stdin", stdin=PASSWORD),
        "--role",
    )
