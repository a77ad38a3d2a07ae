"""The OpenAPI document integrators generate clients from: problems, operationIds, examples.

Read from the app `nextoffer serve` runs (built, not started), and driven through HTTP where
the document makes a promise about the wire: a 405 names every method of its path, and a
database that cannot be reached is a 503 problem with Retry-After, not a 500.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient

from nextoffer.asgi import create_app
from nextoffer.cache.memory import MemoryCache
from nextoffer.config import Settings
from nextoffer.store import Engine

PROBLEM = "application/problem+json"
CAMEL = re.compile(r"^[a-z]+(?:[A-Z][a-z0-9]*)*$")


def _settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        var_dir=tmp_path / "var",
        registry_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifacts_url=f"file://{tmp_path / 'artifacts'}",
        otlp_endpoint="",
    )


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("openapi")
    app = create_app(_settings(tmp, f"sqlite:///{tmp / 'nextoffer.db'}"), cache=MemoryCache())
    return app.openapi()


def operations(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield f"{method.upper()} {path}", operation


def statuses(document: dict[str, Any], operation_id: str) -> set[str]:
    for _, operation in operations(document):
        if operation["operationId"] == operation_id:
            return set(operation["responses"])
    raise AssertionError(f"no operation {operation_id}")


def test_every_error_answer_is_the_one_problem_schema(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert {"type", "title", "status", "detail", "instance", "request_id"} <= set(
        schemas["Problem"]["required"]
    )
    for name, operation in operations(document):
        codes = operation["responses"]
        assert "422" in codes, name
        for code, response in codes.items():
            if int(code) < 400 or (name == "GET /ready" and code == "503"):
                continue
            assert response["content"] == {
                PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}
            }, (name, code)
            assert response["headers"]["X-Request-ID"]["required"], (name, code)
            if code in ("429", "503"):
                assert response["headers"]["Retry-After"]["required"], (name, code)


def test_each_operation_lists_the_statuses_it_can_answer(document: dict[str, Any]) -> None:
    # A viewer route cannot be forbidden (every key is at least a viewer); an admin's can.
    assert statuses(document, "getOffers") == {"200", "401", "404", "422", "429", "503"}
    assert statuses(document, "eraseCustomer") >= {"401", "403", "404", "429", "503"}
    assert "403" not in statuses(document, "listProducts")
    assert "404" not in statuses(document, "listProducts")
    assert "413" in statuses(document, "postEvents")
    assert "413" not in statuses(document, "getOffers")
    assert "409" in statuses(document, "createExperiment")
    assert "409" in statuses(document, "startJob")
    assert "404" in statuses(document, "getImpact")
    assert statuses(document, "getHealth") == {"200", "422"}
    assert statuses(document, "createToken") == {"200", "400", "401", "413", "422", "429", "503"}


def test_operation_ids_are_clean_and_unique(document: dict[str, Any]) -> None:
    ids = [operation["operationId"] for _, operation in operations(document)]
    assert len(ids) == len(set(ids))
    assert all(CAMEL.fullmatch(i) for i in ids), ids
    assert {"getOffers", "getChurnRisk", "postEvents", "startJob"} <= set(ids)
    # The console's pages stay out of the document.
    assert all(p.startswith(("/v1/", "/health", "/ready", "/metrics")) for p in document["paths"])


def test_examples_are_valid_against_their_schemas(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    checked = []
    for name, schema in schemas.items():
        for example in schema.get("examples", []):
            jsonschema.validate(
                example,
                {"$ref": f"#/components/schemas/{name}", "components": document["components"]},
            )
            checked.append(name)
    assert {"OffersOut", "ChurnRiskOut", "EventIn", "EventBatchIn", "Problem", "TokenIn"} <= set(
        checked
    )
    for name, operation in operations(document):
        body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if body is None:
            continue
        ref = body["schema"].get("$ref", "")
        if ref:
            assert schemas[ref.rsplit("/", 1)[1]].get("examples"), f"{name}: no body example"


def test_a_wrong_method_names_every_method_of_the_path(tmp_path: Path) -> None:
    app = create_app(_settings(tmp_path, f"sqlite:///{tmp_path / 'n.db'}"), cache=MemoryCache())
    response = TestClient(app).request("DELETE", "/v1/experiments")
    assert response.status_code == 405
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["allow"] == "GET, POST"


def test_a_database_that_cannot_be_reached_is_a_503_problem(
    tmp_path: Path, down_engine: Engine
) -> None:
    settings = _settings(tmp_path, "postgresql+psycopg://postgres@127.0.0.1:1/x")
    app = create_app(settings, engine=down_engine, cache=MemoryCache())
    key = "nbo_" + "a" * 12 + "_" + "b" * 43  # well-formed: checking it needs the database
    response = TestClient(app).get("/v1/experiments", headers={"X-API-Key": key})
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["retry-after"] == "5"
    assert response.json()["type"].endswith("/backend-unavailable")
    assert response.json()["request_id"] == response.headers["x-request-id"]


def test_docs_page_and_its_assets_come_from_the_app(tmp_path: Path) -> None:
    app = create_app(_settings(tmp_path, f"sqlite:///{tmp_path / 'n.db'}"), cache=MemoryCache())
    client = TestClient(app)
    page = client.get("/docs")
    assert page.status_code == 200
    assert "cdn.jsdelivr.net" not in page.text
    assert "tiangolo" not in page.text
    # Its inline script is allowed by hash, on this page only.
    assert "script-src 'self' 'sha256-" in page.headers["content-security-policy"]
    assert "sha256" not in client.get("/health").headers["content-security-policy"]
    for asset in re.findall(r'(?:src|href)="(/docs/static/[^"]+)"', page.text):
        assert client.get(asset).status_code == 200, asset
    assert client.get("/redoc").status_code == 404
