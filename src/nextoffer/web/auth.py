"""Console sign-in: signed session cookies for the API's users, CSRF tokens, flash messages.

A session is a login token exactly like the API's (`issue_token`, HS256, expiry, the
account re-checked through a `TokenVerifier`, so a disabled user or a changed role applies
within NEXTOFFER_AUTH_CACHE_S, and a logged-out session refused by every replica through
the shared cache), but signed with a key derived from the JWT secret for the
console alone: a session cookie is not a bearer token for the API, nor an API token a
session. It travels in an HttpOnly, SameSite=Lax cookie (Secure, with the `__Host-`
prefix, unless NEXTOFFER_CONSOLE_SECURE_COOKIES=false for plain-http development).

CSRF: every form carries a token that is an HMAC of the session token, so it is per
session, needs no storage, and cannot be computed by a page that cannot read the cookie.
The login form, which has no session yet, uses a signed double-submit nonce instead.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from nextoffer.cache.memory import MemoryCache
from nextoffer.domain.roles import Role, role_allows
from nextoffer.serving.accounts import Principal
from nextoffer.serving.revocations import RevokedSessions
from nextoffer.serving.tokens import TokenVerifier, issue_token, token_id
from nextoffer.store import Engine

_KEY_LABEL = b"nextoffer console session v1"
LOGIN_NONCE_TTL_S = 3600
FLASH_TTL_S = 120
CSRF_FIELD = "csrf_token"

FlashKind = Literal["ok", "error"]


def console_key(jwt_secret: str) -> str:
    """The console's signing key: HMAC-SHA256 of a fixed label under the JWT secret.

    Derived rather than shared, so the same deployment secret serves both while a token of
    one is worthless to the other.
    """
    return hmac.new(jwt_secret.encode(), _KEY_LABEL, hashlib.sha256).hexdigest()


def safe_next(target: str | None) -> str:
    """A local path to go back to after login; anything else (another host) becomes '/'."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target


@dataclass(frozen=True)
class ConsoleSession:
    """The signed-in person and the CSRF token of their session."""

    principal: Principal
    csrf: str

    @property
    def username(self) -> str:
        """Who is signed in."""
        return self.principal.id

    @property
    def role(self) -> Role:
        """Their role now (re-read from the account, not frozen at login)."""
        return self.principal.role

    def can(self, role: Role | str) -> bool:
        """True when this person may do what `role` may."""
        return role_allows(self.principal.role, Role(role))


@dataclass(frozen=True)
class Flash:
    """A one-time message shown on the page a form redirected to."""

    text: str
    kind: FlashKind


class ConsoleAuth:
    """Issues and checks console sessions, CSRF tokens and flash messages."""

    def __init__(
        self,
        engine: Engine,
        jwt_secret: str,
        *,
        secure: bool,
        ttl_s: int,
        cache_s: float,
        revoked: RevokedSessions | None = None,
    ) -> None:
        self._key = console_key(jwt_secret)
        self._verifier = TokenVerifier(engine, self._key, cache_s)
        # Logout revokes the session server-side: a copied cookie stops working too.
        self._revoked = revoked or RevokedSessions(MemoryCache())
        self._signer = URLSafeTimedSerializer(self._key, salt="nextoffer.console")
        self.secure = secure
        self.ttl_s = ttl_s
        # The __Host- prefix makes the browser insist on Secure, Path=/ and no Domain, so a
        # sibling subdomain cannot plant a session cookie; it cannot be used over http.
        prefix = "__Host-" if secure else ""
        self.session_cookie = f"{prefix}nextoffer_console"
        self.login_cookie = f"{prefix}nextoffer_login"
        self.flash_cookie = f"{prefix}nextoffer_flash"

    # --- sessions ---------------------------------------------------------------------

    def issue(self, principal: Principal) -> str:
        """A session token for a user who just proved their password."""
        token, _ = issue_token(principal, self._key, self.ttl_s)
        return token

    def session(self, request: Request) -> ConsoleSession | None:
        """The request's session, or None when absent, forged, expired or the user disabled."""
        token = request.cookies.get(self.session_cookie)
        if not token:
            return None
        found = token_id(token, self._key)
        if found is None or self._revoked.is_revoked(found[0]):
            return None
        principal = self._verifier.verify(token)
        if principal is None:
            return None
        return ConsoleSession(principal, self.csrf_for(token))

    def csrf_for(self, token: str) -> str:
        """The CSRF token of the session whose token is `token`."""
        return hmac.new(self._key.encode(), b"csrf:" + token.encode(), hashlib.sha256).hexdigest()

    def set_session(self, response: Response, token: str) -> None:
        """Hand the browser its session cookie."""
        self._cookie(response, self.session_cookie, token, self.ttl_s)

    def clear_session(self, response: Response) -> None:
        """Make the browser forget its session cookie (log out)."""
        self._delete(response, self.session_cookie)

    def revoke(self, request: Request) -> None:
        """End the request's session server-side until it would have expired (log out)."""
        token = request.cookies.get(self.session_cookie)
        found = token_id(token, self._key) if token else None
        if found is not None:
            self._revoked.revoke(*found)

    # --- login form -------------------------------------------------------------------

    def new_login_nonce(self) -> tuple[str, str]:
        """(nonce for the cookie, CSRF token for the login form) of a new login form."""
        nonce = secrets.token_urlsafe(24)
        return nonce, self._login_token(nonce)

    def set_login_nonce(self, response: Response, nonce: str) -> None:
        """Hand the browser the login form's nonce."""
        self._cookie(response, self.login_cookie, nonce, LOGIN_NONCE_TTL_S)

    def login_form_ok(self, request: Request, token: str) -> bool:
        """True when the form's token matches the nonce cookie set with the form."""
        nonce = request.cookies.get(self.login_cookie)
        if not nonce or not token:
            return False
        return hmac.compare_digest(token, self._login_token(nonce))

    def clear_login_nonce(self, response: Response) -> None:
        """The nonce is single-use: drop it after a successful login."""
        self._delete(response, self.login_cookie)

    def _login_token(self, nonce: str) -> str:
        return hmac.new(self._key.encode(), b"login:" + nonce.encode(), hashlib.sha256).hexdigest()

    # --- flash messages ---------------------------------------------------------------

    def flash(self, response: Response, text: str, kind: FlashKind = "ok") -> None:
        """Show `text` once on the next page (signed, so no one else can put words there)."""
        value = self._signer.dumps({"t": text[:500], "k": kind})
        self._cookie(response, self.flash_cookie, value, FLASH_TTL_S)

    def read_flash(self, request: Request) -> Flash | None:
        """The pending message, if any (drop it with `drop_flash` on the page showing it)."""
        value = request.cookies.get(self.flash_cookie)
        if not value:
            return None
        try:
            data = self._signer.loads(value, max_age=FLASH_TTL_S)
        except BadSignature:
            return None
        kind: FlashKind = "error" if data.get("k") == "error" else "ok"
        return Flash(str(data.get("t", "")), kind)

    def drop_flash(self, response: Response) -> None:
        """The message was shown: forget it."""
        self._delete(response, self.flash_cookie)

    # --- cookies ----------------------------------------------------------------------

    def _cookie(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="lax",
        )

    def _delete(self, response: Response, name: str) -> None:
        response.delete_cookie(name, path="/", secure=self.secure, httponly=True, samesite="lax")
