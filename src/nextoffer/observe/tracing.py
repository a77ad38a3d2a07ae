"""OpenTelemetry tracing of the API and its database calls, when an OTLP endpoint is set."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.metrics import get_meter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter

from nextoffer.store import Engine

REQUEST_ID_ATTRIBUTE = "nextoffer.request_id"
SQL_SCOPE = "opentelemetry.instrumentation.sqlalchemy"


def setup_tracing(
    app: Any,
    engine: Engine,
    *,
    endpoint: str,
    service_name: str = "nextoffer-api",
    exporter: SpanExporter | None = None,
) -> TracerProvider | None:
    """Trace requests (server spans) and SQL (child spans); None when tracing is off.

    `exporter` replaces the OTLP/HTTP exporter (tests pass an in-memory one, exported
    synchronously so a test can read the spans right after the request).
    """
    if not endpoint and exporter is None:
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces"))
        )
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, excluded_urls="health,metrics"
    )
    # Only this engine is traced, by the instrumentation's EngineTracer (its cursor and pool
    # event hooks). SQLAlchemyInstrumentor().instrument() would also patch create_engine for
    # the whole process, and on SQLAlchemy 2.1 does nothing at all: it declares
    # "sqlalchemy < 2.1", and past that check it imports sqlalchemy.ext.asyncio, which needs
    # greenlet (not installed).
    EngineTracer(  # type: ignore[no-untyped-call]  # the package has no annotations here
        provider.get_tracer(SQL_SCOPE),
        engine,
        get_meter(SQL_SCOPE).create_up_down_counter(
            "db.client.connections.usage", unit="connections"
        ),
    )
    return provider


def tag_current_span(request_id: str) -> None:
    """Put the request id on the active server span, so a trace can be found from a log."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute(REQUEST_ID_ATTRIBUTE, request_id)
