"""Liveness, readiness and Prometheus metrics: the only routes open without credentials."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from nextoffer.api.deps import PlatformDep, ServicesDep, credential_problems, require
from nextoffer.api.openapi import may_answer
from nextoffer.api.schemas import ComponentOut, ReadyOut
from nextoffer.domain.roles import Role
from nextoffer.store.engine import ping

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness")
def get_health() -> dict[str, str]:
    """200 while the process runs; touches no backend."""
    return {"status": "ok"}


@router.get(
    "/ready",
    response_model=ReadyOut,
    summary="Readiness",
    responses={503: {"model": ReadyOut, "description": "nothing can be served"}},
)
def get_readiness(services: ServicesDep, platform: PlatformDep, response: Response) -> ReadyOut:
    """200 while offers can be served, even degraded; 503 only when nothing can be.

    Offers can be served from the database (precomputed, live, popular) or, with the
    database down, from a shared cache that still holds answers.
    """
    components: dict[str, ComponentOut] = {}
    try:
        ping(services.engine)
        components["database"] = ComponentOut(status="ok")
    except Exception as exc:
        components["database"] = ComponentOut(status="down", detail=type(exc).__name__)
    if platform.replica is not None:
        # Down is degraded, not unavailable: its reads fall back to the primary.
        replica = platform.replica.health()
        components["read_replica"] = ComponentOut(
            status="ok" if replica.ok else "degraded", detail=replica.detail
        )
    cache_ok = services.cache.ping()
    components["cache"] = ComponentOut(
        status="ok" if cache_ok else "down", detail=services.cache.name
    )
    state = services.state
    components["registry"] = ComponentOut(status="ok" if state.registry_ok else "down")
    components["offers_model"] = (
        ComponentOut(status="ok", detail=state.offers.label)
        if state.offers
        else ComponentOut(status="absent", detail="no champion: popular products are served")
    )
    spooled = services.events.spool_depth()
    components["event_spool"] = ComponentOut(
        status="ok" if spooled == 0 else "degraded", detail=f"{spooled} events waiting"
    )
    database_up = components["database"].status == "ok"
    if database_up and all(c.status in ("ok", "absent") for c in components.values()):
        status = "ready"
    elif database_up or cache_ok:
        status = "degraded"
    else:
        status = "unavailable"
        response.status_code = 503
    return ReadyOut(status=status, components=components)


def _metrics_guard(request: Request, platform: PlatformDep) -> None:
    """Checks an operator's credentials when NEXTOFFER_METRICS_REQUIRE_AUTH is set."""
    if not platform.settings.metrics_require_auth:
        return
    authorization = request.headers.get("authorization", "")
    bearer = (
        HTTPAuthorizationCredentials(scheme="Bearer", credentials=authorization[7:])
        if authorization.lower().startswith("bearer ")
        else None
    )
    require(Role.OPERATOR)(request, platform, request.headers.get("x-api-key"), bearer)


may_answer(
    _metrics_guard,
    {
        status: f"with NEXTOFFER_METRICS_REQUIRE_AUTH only: {why}"
        for status, why in credential_problems(Role.OPERATOR).items()
    },
)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
def get_metrics(
    services: ServicesDep, _guard: Annotated[None, Depends(_metrics_guard)] = None
) -> Response:
    """Metrics in the Prometheus text format (open unless NEXTOFFER_METRICS_REQUIRE_AUTH)."""
    body = generate_latest(services.metrics.scrape_registry())
    return Response(body, media_type=CONTENT_TYPE_LATEST)
