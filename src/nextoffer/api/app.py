"""The HTTP API's half of the app: its routes, problem documents, middleware and gauges."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from opentelemetry.sdk.trace.export import SpanExporter
from starlette.routing import BaseRoute

from nextoffer import __version__
from nextoffer.api.audit import AuditMiddleware
from nextoffer.api.docs import install_docs
from nextoffer.api.input_guard import InputGuard
from nextoffer.api.middleware import RequestMiddleware
from nextoffer.api.openapi import install_openapi, operation_id
from nextoffer.api.problems import install_problem_handlers
from nextoffer.api.redirects import RelativeRedirects
from nextoffer.api.routes import (
    auth,
    batch,
    consent,
    customers,
    events,
    experiments,
    health,
    impact,
    operations,
    privacy,
    products,
)
from nextoffer.domain.impact import ImpactReport
from nextoffer.observe.impact import ImpactCollector
from nextoffer.observe.metrics import GaugeCollector, gauge
from nextoffer.observe.tracing import setup_tracing
from nextoffer.platform import Platform
from nextoffer.registry.gauges import ModelQualityCollector
from nextoffer.registry.serving_mirror import ServingChampions
from nextoffer.store import Engine
from nextoffer.store.impact import latest_impact
from nextoffer.store.reads import churn as churn_reads
from nextoffer.store.reads.jobs import last_outcomes, last_successes

log = logging.getLogger(__name__)

DESCRIPTION = """
Next-best offers, churn risk and segments for telecom customers, fast enough for a live
sales screen. Authenticate with `X-API-Key` (machines) or `Authorization: Bearer` (people,
from `POST /v1/auth/token`). Roles: viewer < writer < operator < admin. Errors are
RFC 9457 problem documents carrying the request id.
"""


API_METADATA: dict[str, Any] = {
    "title": "nextoffer",
    "version": __version__,
    "description": DESCRIPTION,
    # Clean operationIds (`getOffers`) for generated clients; /docs is served from the
    # package's own assets (api/docs.py), ReDoc is not served.
    "generate_unique_id_function": operation_id,
    "docs_url": None,
    "redoc_url": None,
    "openapi_tags": [
        {"name": "customers", "description": "offers, churn risk and segment per customer"},
        {"name": "products", "description": "the catalogue and similar products"},
        {"name": "events", "description": "impressions, clicks, accepts and declines"},
        {"name": "experiments", "description": "A/B tests of offer strategies"},
        {"name": "impact", "description": "what the offers caused: treated vs control"},
        {"name": "operations", "description": "models and jobs (operator, admin)"},
        {"name": "auth", "description": "log in for a bearer token"},
        {"name": "health", "description": "liveness, readiness, metrics (open)"},
    ],
}
"""The FastAPI arguments that describe the API in its OpenAPI document."""


def install_api(app: FastAPI, platform: Platform) -> None:
    """Add the API's routes, problem documents, CORS and /metrics gauges to `app`."""
    settings = platform.settings
    app.state.platform = platform
    install_problem_handlers(app)
    install_openapi(app)
    install_docs(app)
    # Innermost: text no value may hold is refused before any route, API or console.
    app.add_middleware(InputGuard)
    app.add_middleware(RelativeRedirects)
    for router in (
        customers.router,
        batch.router,
        consent.router,
        privacy.router,
        products.router,
        events.router,
        experiments.router,
        impact.router,
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
    _register_gauges(platform)


def install_edges(
    app: FastAPI, platform: Platform, span_exporter: SpanExporter | None = None
) -> None:
    """Request ids, metrics, body limits and tracing around every route of `app`.

    Called after every route is in place, so the server span wraps everything, the
    request-id middleware included.
    """
    settings = platform.settings
    # Inside the request-id middleware, so each audit entry carries the request's id.
    app.add_middleware(AuditMiddleware, trail=platform.audit)
    app.add_middleware(
        RequestMiddleware,
        metrics=platform.services.metrics,
        max_body_bytes=settings.max_body_bytes,
    )
    setup_tracing(
        app, platform.services.engine, endpoint=settings.otlp_endpoint, exporter=span_exporter
    )


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


def _register_gauges(platform: Platform) -> None:
    services = platform.services
    engine = services.engine

    def churn_bands() -> dict[tuple[str, ...], float]:
        return {(band,): float(n) for band, n in churn_reads.band_counts(engine).items()}

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
                    "nextoffer_exposure_spool_depth",
                    "Exposures waiting in the local spool for the database.",
                    [],
                    lambda: gauge(services.exposures.spool_depth()),
                ),
                (
                    "nextoffer_audit_spool_depth",
                    "Audit entries waiting in the local spool for the database.",
                    [],
                    lambda: gauge(platform.audit.spool_depth()),
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
    # From serving's table of champions: a scrape must not import MLflow into this process.
    champions = ServingChampions(services.engine, services.registry)
    services.metrics.add_live_collector(ModelQualityCollector(champions))
    services.metrics.add_live_collector(ImpactCollector(lambda: _latest_report(engine)))


def _latest_report(engine: Engine) -> ImpactReport | None:
    found = latest_impact(engine)
    return None if found is None else found.report
