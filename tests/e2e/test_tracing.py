"""Tracing in-process: a request's server span carries its request id and parents its SQL spans."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import Engine, select

from nextoffer.asgi import create_app
from nextoffer.config import Settings
from nextoffer.domain.roles import Role
from nextoffer.observe.tracing import REQUEST_ID_ATTRIBUTE
from nextoffer.serving.api_keys import create_api_key
from nextoffer.store.engine import make_engine
from nextoffer.store.schema import Customer
from tests.e2e.server import copy_world

REQUEST_ID = "abcdef123456"


@pytest.fixture
def world(sqlite_world: Path, tmp_path: Path) -> Iterator[tuple[Settings, Engine]]:
    """Settings and an engine on a private copy of the SQLite world.

    SQLAlchemy instrumentation is removed again afterwards, pass or fail: the engine's event
    listeners, and the process-wide `create_engine` patch should `SQLAlchemyInstrumentor`
    ever be what the app uses.
    """
    var_dir = copy_world(sqlite_world, tmp_path / "world")
    settings = Settings(
        database_url=f"sqlite:///{var_dir / 'nextoffer.db'}",
        cache_url="memory://",
        registry_uri=f"sqlite:///{var_dir / 'mlflow.db'}",
        artifacts_url=f"file://{var_dir / 'artifacts'}",
        var_dir=var_dir,
        otlp_endpoint="",
    )
    engine = make_engine(settings.database_url)
    try:
        yield settings, engine
    finally:
        instrumentor = SQLAlchemyInstrumentor()
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
        EngineTracer.remove_all_event_listeners()
        engine.dispose()


def test_server_span_has_the_request_id_and_parents_the_sql_spans(
    world: tuple[Settings, Engine],
) -> None:
    settings, engine = world
    _record, key = create_api_key(engine, "tracing test", Role.VIEWER)
    with engine.connect() as conn:
        customer = conn.execute(select(Customer.customer_id).limit(1)).scalar_one()
    exporter = InMemorySpanExporter()
    app = create_app(settings, engine=engine, span_exporter=exporter)
    with TestClient(app) as client:
        response = client.get(
            f"/v1/customers/{customer}/offers",
            headers={"X-API-Key": key, "X-Request-ID": REQUEST_ID},
        )
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == REQUEST_ID
    assert response.json()["customer_id"] == customer

    spans = exporter.get_finished_spans()
    servers = [
        s
        for s in spans
        if s.kind is SpanKind.SERVER
        and (s.attributes or {}).get(REQUEST_ID_ATTRIBUTE) == REQUEST_ID
    ]
    assert len(servers) == 1, [(s.name, s.kind, s.attributes) for s in spans]
    server = servers[0]
    assert server.context is not None
    trace_id = server.context.trace_id
    assert "/v1/customers/{customer_id}/offers" in server.name

    by_id = {s.context.span_id: s for s in spans if s.context is not None}

    def leads_to_server(span: ReadableSpan) -> bool:
        seen = 0
        while span.parent is not None and seen < 100:
            if span.parent.span_id == server.context.span_id:  # type: ignore[union-attr]
                return True
            parent = by_id.get(span.parent.span_id)
            if parent is None:
                return False
            span, seen = parent, seen + 1
        return False

    sql = [
        s
        for s in spans
        if s.instrumentation_scope is not None
        and s.instrumentation_scope.name.startswith("opentelemetry.instrumentation.sqlalchemy")
    ]
    in_request = [s for s in sql if s.context is not None and s.context.trace_id == trace_id]
    assert in_request, [(s.name, s.instrumentation_scope) for s in spans]
    assert all(leads_to_server(s) for s in in_request)
    # The key check and the offers lookup both query the database inside the request.
    statements = " ".join(str((s.attributes or {}).get("db.statement", "")) for s in in_request)
    assert "api_keys" in statements and "precomputed_offers" in statements
