"""What routes depend on: the services of the running app and the caller's verified identity."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from nextoffer.api.openapi import may_answer
from nextoffer.api.problems import ProblemError, unauthorized
from nextoffer.domain.roles import Role, role_allows
from nextoffer.platform import Platform
from nextoffer.serving.accounts import Principal
from nextoffer.usecases.context import Services

api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, description="a machine's key")
bearer_scheme = HTTPBearer(auto_error=False, description="a login token from /v1/auth/token")


def get_platform(request: Request) -> Platform:
    """The platform of the app serving this request."""
    platform: Platform = request.app.state.platform
    return platform


PlatformDep = Annotated[Platform, Depends(get_platform)]


def get_services(request: Request) -> Services:
    """The services the use cases work with."""
    platform: Platform = request.app.state.platform
    return platform.services


ServicesDep = Annotated[Services, Depends(get_services)]
may_answer(
    get_services,
    {503: "a backend this answer needs (database, cache, broker) cannot be reached now"},
)


def require(role: Role) -> Callable[..., Principal]:
    """A dependency that authenticates the caller and checks that `role` is allowed."""

    def dependency(
        request: Request,
        platform: PlatformDep,
        api_key: Annotated[str | None, Depends(api_key_scheme)] = None,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)] = None,
    ) -> Principal:
        principal = None
        if api_key:
            principal = platform.key_verifier.verify(api_key)
        elif bearer is not None:
            principal = platform.token_verifier.verify(bearer.credentials)
        if principal is None:
            raise unauthorized(
                "missing or invalid credentials: send X-API-Key or Authorization: Bearer"
            )
        platform.limiter.check(f"{principal.kind}:{principal.id}", platform.services.metrics)
        if not role_allows(principal.role, role):
            raise ProblemError(
                403,
                f"this needs the {role.value} role; the caller has {principal.role.value}",
                kind="forbidden",
            )
        request.state.principal = principal
        return principal

    dependency.required_role = role  # type: ignore[attr-defined]  # read by document_roles
    may_answer(dependency, credential_problems(role))
    return dependency


def credential_problems(role: Role) -> dict[int, str]:
    """What checking the credentials for `role` may answer (403 only above viewer)."""
    found = {
        401: "no valid credentials: send X-API-Key or Authorization: Bearer",
        429: "over the caller's requests per minute (NEXTOFFER_RATE_LIMIT_PER_MINUTE); "
        "retry after Retry-After",
        503: "the credentials cannot be checked now (database unreachable); "
        "retry after Retry-After",
    }
    if role.rank > Role.VIEWER.rank:
        found[403] = f"this needs the {role.value} role or above"
    return found


Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]
Writer = Annotated[Principal, Depends(require(Role.WRITER))]
Operator = Annotated[Principal, Depends(require(Role.OPERATOR))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
