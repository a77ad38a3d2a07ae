"""Authentication and roles of every operation, as the server's own OpenAPI document states them.

The route list and each route's role come from `/openapi.json` (`x-required-role`), never
from a list written here, so a new route is covered the day it is added. Only refused
requests are sent: nothing here creates, starts or promotes anything.
"""

from __future__ import annotations

import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, select

from nextoffer.store.runs import utcnow
from nextoffer.store.schema import Customer, Experiment, Product
from tests.e2e.conftest import ROLES, SERVER_SETTINGS, Api
from tests.e2e.server import ApiServer, copy_world, create_key, world_env

HTTP_METHODS = ("get", "post", "put", "patch", "delete")
# Well-formed (nbo_<12 hex>_<43 characters>) but never issued, and plainly malformed.
UNKNOWN_KEY = "nbo_000000000000_" + "A" * 43
GARBAGE_CREDENTIALS = (
    {"X-API-Key": UNKNOWN_KEY},
    {"X-API-Key": "not-a-key"},
    {"Authorization": "Bearer not.a.token"},
)


def operations(api: Api) -> list[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path template, operation) of every operation the server documents."""
    spec = api.client.get("/openapi.json").json()
    return [
        (method.upper(), path, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Follow a local `$ref`."""
    while "$ref" in schema:
        node: Any = spec
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def minimal(spec: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A small value valid for `schema`: its first example, else the required fields only."""
    schema = resolve(spec, schema)
    if schema.get("examples"):
        return schema["examples"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return minimal(spec, schema[key][0])
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: minimal(spec, properties[name]) for name in schema.get("required", [])}
    if kind == "array":
        return [minimal(spec, schema["items"]) for _ in range(schema.get("minItems", 0))]
    if kind == "integer":
        return max(1, int(schema.get("minimum", 1)))
    if kind == "number":
        return float(schema.get("minimum", 1.0))
    if kind == "boolean":
        return False
    return "x" * max(1, int(schema.get("minLength", 1)))


def request_body(spec: dict[str, Any], operation: dict[str, Any]) -> Any:
    """A minimal valid JSON body for the operation, or None when it takes none."""
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    return None if content is None else minimal(spec, content["schema"])


def path_values(api: Api) -> dict[str, str]:
    """Plausible values of every path parameter: real ids from the database."""
    with api.engine.begin() as conn:
        customer = conn.execute(select(Customer.customer_id).limit(1)).scalar_one()
        product = conn.execute(select(Product.product_id).limit(1)).scalar_one()
        experiment = conn.execute(select(Experiment.experiment_id).limit(1)).scalar()
        if experiment is None:
            # A stopped one: a running experiment would change other tests' answers.
            experiment = str(uuid.uuid4())
            conn.execute(
                insert(Experiment).values(
                    experiment_id=experiment,
                    name="e2e auth fixture",
                    unit="customer",
                    variants=[
                        {"name": "control", "strategy": "control", "weight": 1.0},
                        {"name": "ranker", "strategy": "champion", "weight": 1.0},
                    ],
                    status="stopped",
                    created_at=utcnow(),
                    stopped_at=utcnow(),
                    created_by="e2e",
                )
            )
    return {
        "customer_id": customer,
        "product_id": product,
        "experiment_id": experiment,
        "job_id": str(uuid.uuid4()),
        "kind": "offers",
    }


def send(api: Api, method: str, path: str, body: Any, headers: dict[str, str]) -> httpx.Response:
    """One request; the body (if any) as JSON."""
    if body is None:
        return api.client.request(method, path, headers=headers)
    return api.client.request(method, path, json=body, headers=headers)


def problem_of(response: httpx.Response) -> dict[str, Any] | None:
    """The problem document, or None when the response is not one."""
    if not response.headers.get("content-type", "").startswith("application/problem+json"):
        return None
    body: dict[str, Any] = response.json()
    if body.get("status") != response.status_code:
        return None
    if body.get("request_id") != response.headers.get("x-request-id"):
        return None
    return body


def test_every_protected_operation_refuses_missing_bad_and_lesser_credentials(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    values = path_values(api)
    found = operations(api)
    roles = {op.get("x-required-role") for _, _, op in found}
    # The document states a role for every operation, and every role guards something.
    assert roles == {"none", *ROLES}, roles

    failures: list[str] = []
    protected = 0
    for method, template, operation in found:
        role = operation["x-required-role"]
        path = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)
        body = request_body(spec, operation)
        where = f"{method} {template}"
        if role == "none":
            if method == "GET":
                response = send(api, method, path, body, {})
                if response.status_code != 200:
                    failures.append(f"{where}: open, yet {response.status_code}")
            continue
        protected += 1

        anonymous = send(api, method, path, body, {})
        problem = problem_of(anonymous)
        if anonymous.status_code != 401 or problem is None:
            failures.append(f"{where}: no credentials gave {anonymous.status_code}")
        elif not anonymous.headers.get("www-authenticate", "").startswith("Bearer"):
            failures.append(f"{where}: 401 without WWW-Authenticate")

        for garbage in GARBAGE_CREDENTIALS:
            refused = send(api, method, path, body, garbage)
            if refused.status_code != 401 or problem_of(refused) is None:
                failures.append(f"{where}: {garbage} gave {refused.status_code}")

        rank = ROLES.index(role)
        if rank == 0:
            continue  # nothing is below viewer
        lesser = ROLES[rank - 1]
        forbidden = send(api, method, path, body, api.headers(lesser))
        problem = problem_of(forbidden)
        if forbidden.status_code != 403 or problem is None:
            failures.append(f"{where}: a {lesser} key gave {forbidden.status_code}")
        elif not problem["type"].endswith("/forbidden") or role not in problem["detail"]:
            failures.append(f"{where}: 403 problem does not name {role}: {problem}")
    assert protected > 0
    assert not failures, "\n".join(failures)


RATE_LIMIT = 5


def test_rate_limit_answers_429_with_retry_after_per_key(
    sqlite_world: Path, tmp_path: Path
) -> None:
    var_dir = copy_world(sqlite_world, tmp_path / "world")
    env = {
        **world_env(var_dir, f"sqlite:///{var_dir / 'nextoffer.db'}"),
        **SERVER_SETTINGS,
        "NEXTOFFER_RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT),
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        busy, other = pool.map(lambda _: create_key(env, "viewer"), range(2))
    server = ApiServer(env, var_dir / "api.log").start()
    try:
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            # Windows are whole minutes: start well inside one so all requests share it.
            if time.time() % 60 > 57:
                time.sleep(60 - time.time() % 60 + 0.1)
            answers = [
                client.get("/v1/products", params={"limit": 1}, headers={"X-API-Key": busy})
                for _ in range(RATE_LIMIT + 1)
            ]
            assert [a.status_code for a in answers] == [200] * RATE_LIMIT + [429]
            limited = answers[-1]
            assert limited.headers["content-type"].startswith("application/problem+json")
            problem = limited.json()
            assert problem["status"] == 429 and problem["type"].endswith("/rate-limited")
            assert problem["request_id"] == limited.headers["x-request-id"]
            retry = limited.headers["retry-after"]
            assert retry.isdigit() and 1 <= int(retry) <= 60

            fresh = client.get("/v1/products", params={"limit": 1}, headers={"X-API-Key": other})
            assert fresh.status_code == 200
            assert fresh.json()["items"]
            metrics = client.get("/metrics").text
            assert "nextoffer_rate_limited_total 1.0" in metrics
    finally:
        server.stop()
