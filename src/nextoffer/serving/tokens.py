"""Login tokens for people: issue and check signed JWTs, and find the key that signs them."""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import jwt

from nextoffer.config import Settings
from nextoffer.domain.errors import ConfigError
from nextoffer.domain.private_files import private_dir
from nextoffer.domain.roles import Role
from nextoffer.serving.accounts import (
    Principal,
    TtlCache,
    stored_role,
    utcnow,
)
from nextoffer.serving.users import current_role
from nextoffer.serving.weak_secrets import check_secret
from nextoffer.store import Engine
from nextoffer.store.engine import is_database_down

log = logging.getLogger(__name__)

JWT_ISSUER = "nextoffer"
JWT_ALGORITHM = "HS256"
JWT_SECRET_MIN = 32
JWT_SECRET_SETTING = "NEXTOFFER_JWT_SECRET"  # noqa: S105 - a variable name, not a secret
PRIVACY_KEY_SETTING = "NEXTOFFER_PRIVACY_KEY"
_JWT_CLAIMS = ["sub", "role", "iat", "exp", "jti", "iss"]


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
    issued = int((now or utcnow()).timestamp())
    claims = {
        "sub": principal.id,
        "role": principal.role.value,
        "iat": issued,
        "exp": issued + ttl_s,
        "jti": uuid.uuid4().hex,
        "iss": JWT_ISSUER,
    }
    return jwt.encode(claims, secret, algorithm=JWT_ALGORITHM), ttl_s


def _decoded(token: str, secret: str) -> dict[str, Any] | None:
    """The claims of a valid, unexpired token of ours, or None."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[JWT_ALGORITHM],
            issuer=JWT_ISSUER,
            options={"require": _JWT_CLAIMS},
        )
    except jwt.PyJWTError:
        return None
    return claims


def _token_claims(token: str, secret: str) -> Principal | None:
    claims = _decoded(token, secret)
    if claims is None:
        return None
    subject, role_text = claims.get("sub"), claims.get("role")
    if not isinstance(subject, str) or not isinstance(role_text, str):
        return None
    role = stored_role(role_text)
    return None if role is None else Principal("user", subject, role)


def token_id(token: str, secret: str) -> tuple[str, int] | None:
    """(jti, exp) of a valid token of ours, or None: what a revocation list is keyed by."""
    claims = _decoded(token, secret)
    if claims is None:
        return None
    jti, exp = claims.get("jti"), claims.get("exp")
    if not isinstance(jti, str) or not jti or not isinstance(exp, int):
        return None
    return jti, exp


def decode_token(token: str, secret: str, engine: Engine | None = None) -> Principal | None:
    """The token's principal, or None when it is garbled, forged, expired or not ours.

    With an engine the account must also still exist and be enabled, and the role is the
    one it has now, so a demotion applies before the token expires.
    """
    principal = _token_claims(token, secret)
    if principal is None or engine is None:
        return principal
    role = current_role(engine, principal.id)
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
        self._accounts: TtlCache[str, Role | None] = TtlCache(cache_s, clock)

    def verify(self, token: str) -> Principal | None:
        """The caller, or None for a bad token or a missing or disabled account."""
        claimed = _token_claims(token, self._secret)
        if claimed is None:
            return None
        hit, role = self._accounts.get(claimed.id)
        if not hit:
            try:
                role = current_role(self._engine, claimed.id)
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


def resolve_jwt_secret(settings: Settings) -> str:
    """The key that signs login tokens: the setting, or one generated once per machine.

    Without NEXTOFFER_JWT_SECRET a random key is created in VAR_DIR/secrets/jwt_secret
    (mode 0600) and read back afterwards, so tokens survive restarts and every worker
    process on the machine signs with the same key. Replicas on several machines need the
    setting.
    """
    return resolve_secret(settings, settings.jwt_secret, "jwt_secret", JWT_SECRET_SETTING)


def resolve_privacy_key(settings: Settings) -> str:
    """The key of customer digests (erasure ledger, audit trail): setting or generated once.

    It must outlive every backup: a restore re-applies erasures by digest, so the same key
    has to be there afterwards. Back up VAR_DIR/secrets (or set NEXTOFFER_PRIVACY_KEY).
    """
    return resolve_secret(settings, settings.privacy_key, "privacy_key", PRIVACY_KEY_SETTING)


def resolve_secret(settings: Settings, configured: str, name: str, setting: str) -> str:
    """`configured` if set (at least JWT_SECRET_MIN long), else VAR_DIR/secrets/<name>.

    A known, example or guessable value is refused (ConfigError) unless
    NEXTOFFER_ALLOW_INSECURE_SECRETS is true.
    """
    if configured:
        if len(configured) < JWT_SECRET_MIN:
            raise ConfigError(
                f"{setting}: must be at least {JWT_SECRET_MIN} characters "
                f"(got {len(configured)}); e.g. the output of `openssl rand -hex 32`"
            )
        check_secret(configured, setting, settings)
        return configured
    path = settings.var_dir / "secrets" / name
    try:
        secret = _read_secret(path)
        if secret is None:
            _publish_secret(path, secrets.token_hex(64))
            secret = _read_secret(path)
    except OSError as exc:
        raise ConfigError(
            f"{setting} is not set and {path} cannot be used: {exc.strerror}"
        ) from None
    if secret is None or len(secret) < JWT_SECRET_MIN:
        raise ConfigError(
            f"{path} holds no usable key (under {JWT_SECRET_MIN} characters); delete it to "
            f"generate a new one, or set {setting}"
        )
    check_secret(secret, str(path), settings)
    return secret


def _read_secret(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None


def _publish_secret(path: Path, secret: str) -> None:
    """Write `secret` to `path` unless another process got there first (then keep theirs)."""
    private_dir(path.parent)
    # Written whole to a private temporary file, then hard-linked into place: the link
    # fails if the file exists, so racing workers agree on one key and none reads a
    # half-written file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
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
