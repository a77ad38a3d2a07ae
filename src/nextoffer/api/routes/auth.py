"""Login for people: a username and password for a short-lived bearer token."""

from __future__ import annotations

from fastapi import APIRouter, Request

from nextoffer.api.deps import PlatformDep
from nextoffer.api.problems import unauthorized
from nextoffer.api.schemas import TokenIn, TokenOut
from nextoffer.serving.tokens import issue_token
from nextoffer.serving.users import authenticate

router = APIRouter(prefix="/v1/auth", tags=["auth"])


@router.post("/token", response_model=TokenOut, summary="Log in")
def token(body: TokenIn, request: Request, platform: PlatformDep) -> TokenOut:
    """A bearer token for `Authorization: Bearer …`, valid for NEXTOFFER_JWT_TTL_S seconds."""
    client = request.client.host if request.client else "unknown"
    # Guessing passwords is limited per client address and per username.
    metrics = platform.services.metrics
    platform.limiter.check(f"login:{client}", metrics)
    platform.limiter.check(f"login-user:{body.username.lower()}", metrics)
    principal = authenticate(platform.services.engine, body.username, body.password)
    if principal is None:
        raise unauthorized("wrong username or password, or the account is disabled")
    access, expires_in = issue_token(principal, platform.jwt_secret, platform.settings.jwt_ttl_s)
    return TokenOut(access_token=access, expires_in=expires_in, role=principal.role.value)
