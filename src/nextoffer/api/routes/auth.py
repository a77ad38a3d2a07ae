"""Login for people: a username and password for a short-lived bearer token."""

from __future__ import annotations

from fastapi import APIRouter, Request

from nextoffer.api.deps import PlatformDep
from nextoffer.api.problems import unauthorized
from nextoffer.api.schemas import TokenIn, TokenOut
from nextoffer.serving.tokens import issue_token

router = APIRouter(prefix="/v1/auth", tags=["auth"])


@router.post(
    "/token",
    response_model=TokenOut,
    summary="Log in",
    responses={
        401: {"description": "wrong username or password, or the account is disabled"},
        429: {"description": "too many wrong passwords for this username from this address"},
        503: {"description": "too many password checks queued; retry after Retry-After"},
    },
)
async def create_token(body: TokenIn, request: Request, platform: PlatformDep) -> TokenOut:
    """A bearer token for `Authorization: Bearer …`, valid for NEXTOFFER_JWT_TTL_S seconds.

    Wrong passwords back off per username and client address (429 with Retry-After), and
    password checks queue for a few slots (503 with Retry-After when the queue is too long).
    """
    client = request.client.host if request.client else "unknown"
    # Request volume per address, as for any caller; guessing has its own backoff below.
    platform.limiter.check(f"login:{client}", platform.services.metrics)
    principal = await platform.logins.attempt(body.username, body.password, client)
    if principal is None:
        raise unauthorized("wrong username or password, or the account is disabled")
    access, expires_in = issue_token(principal, platform.jwt_secret, platform.settings.jwt_ttl_s)
    return TokenOut(access_token=access, expires_in=expires_in, role=principal.role.value)
