"""What routes depend on: the services of the running app and the caller's verified identity."""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine

from nextoffer.api.jobs import JobRunner
from nextoffer.api.problems import ProblemError
from nextoffer.cache import Cache, CacheUnavailableError, keys
from nextoffer.cache.memory import MemoryCache
from nextoffer.config import Settings
from nextoffer.domain.experiments import Variant, assign
from nextoffer.domain.roles import Role, role_allows
from nextoffer.observe.metrics import ApiMetrics
from nextoffer.registry.mlflow_registry import ModelRegistry
from nextoffer.serving.accounts import ApiKeyVerifier, Principal, TokenVerifier
from nextoffer.serving.events import EventWriter
from nextoffer.serving.experiments import ExperimentRecord, running_experiments
from nextoffer.serving.offers import OfferService
from nextoffer.serving.state import ServingState

log = logging.getLogger(__name__)

api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, description="a machine's key")
bearer_scheme = HTTPBearer(auto_error=False, description="a login token from /v1/auth/token")


class RateLimiter:
    """Fixed one-minute windows per caller, counted in the shared cache (Redis when set).

    When the shared cache is unreachable the counts fall back to this process, so limits
    keep working (per replica) instead of failing requests.
    """

    def __init__(self, cache: Cache, per_minute: int) -> None:
        self.cache = cache
        self.per_minute = per_minute
        self._local = MemoryCache(max_entries=50_000)

    def check(self, principal: str, metrics: ApiMetrics | None = None) -> None:
        """Count one request; raise a 429 problem when over the limit."""
        if self.per_minute <= 0:
            return
        now = time.time()
        window = int(now // 60)
        key = keys.rate_limit(principal, window)
        try:
            count = self.cache.incr(key, 61)
        except CacheUnavailableError:
            count = self._local.incr(key, 61)
        if count > self.per_minute:
            if metrics is not None:
                metrics.rate_limited.inc()
            retry = max(1, math.ceil((window + 1) * 60 - now))
            raise ProblemError(
                429,
                f"over {self.per_minute} requests per minute; retry in {retry} s",
                kind="rate-limited",
                headers={"Retry-After": str(retry)},
            )


@dataclass
class ExperimentBook:
    """The running experiment (at most one), re-read every `refresh_s` and after changes."""

    engine: Engine
    cache: Cache
    refresh_s: float
    _running: ExperimentRecord | None = None
    _read_at: float = -math.inf
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def running(self) -> ExperimentRecord | None:
        """The running experiment, if any (kept when the database is down)."""
        now = time.monotonic()
        if now - self._read_at >= self.refresh_s:
            with self._lock:
                if now - self._read_at >= self.refresh_s:
                    try:
                        found = running_experiments(self.engine)
                        self._running = found[0] if found else None
                    except Exception as exc:
                        log.warning("cannot read experiments: %s", exc)
                    self._read_at = now
        return self._running

    def invalidate(self) -> None:
        """Re-read on the next call (after create or stop)."""
        self._read_at = -math.inf

    def variant_for(
        self, customer_id: str, session_id: str | None
    ) -> tuple[ExperimentRecord, Variant] | None:
        """The sticky variant of a customer (or session) in the running experiment."""
        experiment = self.running()
        if experiment is None:
            return None
        variants = list(experiment.variants)
        if experiment.unit == "session" and session_id:
            key = keys.session_variant(session_id)
            try:
                remembered = self.cache.get(key)
            except CacheUnavailableError:
                remembered = None
            if remembered:
                name = remembered.split("|", 1)
                if name[0] == experiment.experiment_id:
                    match = [v for v in variants if v.name == name[-1]]
                    if match:
                        return experiment, match[0]
            variant = assign(experiment.experiment_id, session_id, variants)
            # Without the cache the hash still gives the same variant next time.
            with contextlib.suppress(CacheUnavailableError):
                self.cache.set(
                    key, f"{experiment.experiment_id}|{variant.name}", keys.SESSION_TTL_S
                )
            return experiment, variant
        return experiment, assign(experiment.experiment_id, customer_id, variants)


@dataclass
class Services:
    """Everything the routes use, built once per app by `create_app`."""

    settings: Settings
    engine: Engine
    cache: Cache
    registry: ModelRegistry
    state: ServingState
    offers: OfferService
    events: EventWriter
    key_verifier: ApiKeyVerifier
    token_verifier: TokenVerifier
    jwt_secret: str
    metrics: ApiMetrics
    limiter: RateLimiter
    experiments: ExperimentBook
    jobs: JobRunner


def get_services(request: Request) -> Services:
    """The app's services."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def require(role: Role) -> Callable[..., Principal]:
    """A dependency that authenticates the caller and checks that `role` is allowed."""

    def dependency(
        request: Request,
        services: ServicesDep,
        api_key: Annotated[str | None, Depends(api_key_scheme)] = None,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)] = None,
    ) -> Principal:
        principal = None
        if api_key:
            principal = services.key_verifier.verify(api_key)
        elif bearer is not None:
            principal = services.token_verifier.verify(bearer.credentials)
        if principal is None:
            raise ProblemError(
                401,
                "missing or invalid credentials: send X-API-Key or Authorization: Bearer",
                kind="unauthorized",
                headers={"WWW-Authenticate": 'Bearer realm="nextoffer"'},
            )
        services.limiter.check(f"{principal.kind}:{principal.id}", services.metrics)
        if not role_allows(principal.role, role):
            raise ProblemError(
                403,
                f"this needs the {role.value} role; the caller has {principal.role.value}",
                kind="forbidden",
            )
        request.state.principal = principal
        return principal

    dependency.required_role = role  # type: ignore[attr-defined]  # read by document_roles
    return dependency


Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]
Writer = Annotated[Principal, Depends(require(Role.WRITER))]
Operator = Annotated[Principal, Depends(require(Role.OPERATOR))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
