"""The FastAPI app factory: wires settings to the store, cache, registry and serving services."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from opentelemetry.sdk.trace.export import SpanExporter
from sqlalchemy import Engine, func, select
from starlette.routing import BaseRoute

from nextoffer import __version__
from nextoffer.api.deps import ExperimentBook, RateLimiter, Services
from nextoffer.api.jobs import JobRunner
from nextoffer.api.middleware import RequestMiddleware
from nextoffer.api.problems import install_problem_handlers
from nextoffer.api.routes import auth, customers, events, experiments, health, operations, products
from nextoffer.cache import Cache, make_cache
from nextoffer.config import Settings
from nextoffer.observe.metrics import ApiMetrics, GaugeCollector, gauge
from nextoffer.observe.tracing import setup_tracing
from nextoffer.pipelines.jobs import JobContext
from nextoffer.registry.gauges import ModelQualityCollector
from nextoffer.registry.mlflow_registry import ModelRegistry
from nextoffer.serving.accounts import ApiKeyVerifier, TokenVerifier, resolve_jwt_secret
from nextoffer.serving.events import EventWriter, start_replayer
from nextoffer.serving.offers import OfferService
from nextoffer.serving.state import ServingState
from nextoffer.store.engine import make_engine
from nextoffer.store.runs import last_outcomes, last_successes
from nextoffer.store.schema import ChurnScore

log = logging.getLogger(__name__)

DESCRIPTION = """
Next-best offers, churn risk and segments for telecom customers, fast enough for a live
sales screen. Authenticate with `X-API-Key` (machines) or `Authorization: Bearer` (people,
from `POST /v1/auth/token`). Roles: viewer < writer < operator < admin. Errors are
RFC 9457 problem documents carrying the request id.
"""


@dataclass
class Background:
    """Threads the app runs beside requests: state refresh and spool replay."""

    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    cache: Cache | None = None,
    span_exporter: SpanExporter | None = None,
) -> FastAPI:
    """Build the app. Backends are created here but not contacted until startup."""
    engine = engine or make_engine(settings.database_url, pool_size=10)
    cache = cache or make_cache(settings.cache_url)
    registry = ModelRegistry.from_settings(settings)
    metrics = ApiMetrics()
    state = ServingState(engine, registry)
    offer_service = OfferService(
        engine,
        cache,
        state,
        settings,
        on_source=lambda source: metrics.offers_served.labels(source).inc(),
        on_cache=lambda hit: metrics.cache_requests.labels(
            "error" if hit is None else "hit" if hit else "miss"
        ).inc(),
    )
    writer = EventWriter(engine, settings.spool_dir)
    jwt_secret = resolve_jwt_secret(settings)
    services = Services(
        settings=settings,
        engine=engine,
        cache=cache,
        registry=registry,
        state=state,
        offers=offer_service,
        events=writer,
        key_verifier=ApiKeyVerifier(engine, settings.auth_cache_s),
        token_verifier=TokenVerifier(engine, jwt_secret, settings.auth_cache_s),
        jwt_secret=jwt_secret,
        metrics=metrics,
        limiter=RateLimiter(cache, settings.rate_limit_per_minute),
        experiments=ExperimentBook(engine, cache, settings.serving_refresh_s),
        jobs=JobRunner(
            JobContext(engine, settings, registry),
            after=lambda _kind: _after_job(state, offer_service),
        ),
    )
    _register_gauges(services)
    background = Background()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state.refresh()
        background.threads.append(
            _every(settings.serving_refresh_s, background.stop, lambda: _refresh(services))
        )
        background.threads.append(start_replayer(writer, settings.spool_replay_s, background.stop))
        log.info(
            "serving offers %s, churn %s; cache %s",
            state.offers.label if state.offers else "none",
            state.churn.label if state.churn else "none",
            cache.name,
        )
        yield
        background.stop.set()
        services.jobs.shutdown()
        cache.close()

    app = FastAPI(
        title="nextoffer",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[
            {"name": "customers", "description": "offers, churn risk and segment per customer"},
            {"name": "products", "description": "the catalogue and similar products"},
            {"name": "events", "description": "impressions, clicks, accepts and declines"},
            {"name": "experiments", "description": "A/B tests of offer strategies"},
            {"name": "operations", "description": "models and jobs (operator, admin)"},
            {"name": "auth", "description": "log in for a bearer token"},
            {"name": "health", "description": "liveness, readiness, metrics (open)"},
        ],
    )
    app.state.services = services
    install_problem_handlers(app)
    for router in (
        customers.router,
        products.router,
        events.router,
        experiments.router,
        operations.router,
        auth.router,
        health.router,
    ):
        document_roles(router.routes)
        app.include_router(router)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
            max_age=600,
        )
    app.add_middleware(RequestMiddleware, metrics=metrics, max_body_bytes=settings.max_body_bytes)
    # Added last so its server span wraps everything, the request-id middleware included.
    setup_tracing(app, engine, endpoint=settings.otlp_endpoint, exporter=span_exporter)
    return app


def document_roles(routes: Sequence[BaseRoute]) -> None:
    """Write each operation's required role into the OpenAPI document (`x-required-role`).

    Read from the route's own dependencies, so the document cannot drift from what is
    enforced; the auth tests take their route list and expectations from it.
    """
    for route in routes:
        if not isinstance(route, APIRoute):
            continue
        roles = [
            getattr(dep.call, "required_role", None)
            for dep in _walk(route.dependant)
            if hasattr(dep.call, "required_role")
        ]
        extra = dict(route.openapi_extra or {})
        extra["x-required-role"] = roles[0].value if roles and roles[0] else "none"
        route.openapi_extra = extra


def _walk(dependant: Dependant) -> Iterator[Dependant]:
    for dep in dependant.dependencies:
        yield dep
        yield from _walk(dep)


def _every(interval_s: float, stop: threading.Event, work: object) -> threading.Thread:
    def loop() -> None:
        while not stop.wait(interval_s):
            try:
                work()  # type: ignore[operator]
            except Exception:
                log.exception("background refresh failed")

    thread = threading.Thread(target=loop, name="serving-refresh", daemon=True)
    thread.start()
    return thread


def _refresh(services: Services) -> None:
    before = services.state.stamp
    services.state.refresh()
    if services.state.stamp != before:
        log.info("serving state changed: %s", services.state.stamp)


def _after_job(state: ServingState, offers: OfferService) -> None:
    """After a job through the API: pick up new models and data at once, drop old answers."""
    state.refresh()
    offers.invalidate()


def _register_gauges(services: Services) -> None:
    engine = services.engine

    def churn_bands() -> dict[tuple[str, ...], float]:
        latest = select(func.max(ChurnScore.scored_at)).scalar_subquery()
        with engine.connect() as conn:
            rows = conn.execute(
                select(ChurnScore.band, func.count())
                .where(ChurnScore.scored_at == latest)
                .group_by(ChurnScore.band)
            ).all()
        return {(str(band),): float(n) for band, n in rows}

    def pool() -> dict[tuple[str, ...], float]:
        status = engine.pool
        size = getattr(status, "size", lambda: 0)()
        return {
            ("checked_out",): float(getattr(status, "checkedout", lambda: 0)()),
            ("size",): float(size),
            ("overflow",): float(getattr(status, "overflow", lambda: 0)()),
        }

    def model_info() -> dict[tuple[str, ...], float]:
        # A live gauge, not prometheus_client's Info: Info is not exported by the merged
        # view of several worker processes.
        state = services.state
        offers = state.offers.label if state.offers else "none"
        churn = state.churn.label if state.churn else "none"
        return {(offers, churn, state.stamp): 1.0}

    def job_freshness() -> dict[tuple[str, ...], float]:
        return {(job,): at.timestamp() for job, at in last_successes(engine).items()}

    def job_outcomes() -> dict[tuple[str, ...], float]:
        return {(job,): 1.0 if ok else 0.0 for job, ok in last_outcomes(engine).items()}

    services.metrics.add_live_collector(
        GaugeCollector(
            [
                (
                    "nextoffer_job_last_success_timestamp_seconds",
                    "When each job (etl, ingest, features, training, precompute, backup, "
                    "backup_verify...) last succeeded, as a Unix time; staleness alerts use it.",
                    ["job"],
                    job_freshness,
                ),
                (
                    "nextoffer_job_last_run_status",
                    "1 when the most recent finished run of a job succeeded, 0 when it failed.",
                    ["job"],
                    job_outcomes,
                ),
                (
                    "nextoffer_model_info",
                    "The champion versions this API process serves (value 1).",
                    ["offers_version", "churn_version", "stamp"],
                    model_info,
                ),
                (
                    "nextoffer_churn_customers",
                    "Customers by churn band in the latest scoring.",
                    ["band"],
                    churn_bands,
                ),
                (
                    "nextoffer_db_pool_connections",
                    "Database connection pool: checked out, size, overflow.",
                    ["state"],
                    pool,
                ),
                (
                    "nextoffer_event_spool_depth",
                    "Events waiting in the local spool for the database.",
                    [],
                    lambda: gauge(services.events.spool_depth()),
                ),
                (
                    "nextoffer_cache_up",
                    "1 when the cache answers a ping.",
                    [],
                    lambda: gauge(1.0 if services.cache.ping() else 0.0),
                ),
            ]
        )
    )
    services.metrics.add_live_collector(ModelQualityCollector(services.registry))
