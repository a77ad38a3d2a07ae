"""Property-based tests of the whole OpenAPI schema against the real server (schemathesis).

One `nextoffer serve` subprocess on a small trained SQLite world, called with an ADMIN key
on every request and rate limits off. For every operation schemathesis generates valid and
invalid requests (examples, coverage and fuzzing phases, derandomized). Requirements:

- no response is a 5xx, and every response conforms to the documented schema where a
  schema is documented for its status;
- every operation got at least one answer that was not 401 / 403 / 429: an operation the
  admin key could never get past would only test the auth layer (404 for a random
  `customer_id` and 422 for an invalid body count as "past auth").

Job starts of kind `training` and `etl` are never sent: training takes minutes and an ETL
path is whatever text schemathesis makes up (a real directory would be read). `precompute`
jobs are sent and run in the server's background thread (about a second on this world).
`POST /v1/models/{kind}/champion` may promote or roll back models: fine on a throwaway world.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from tests.e2e.server import ApiServer, build_world, create_key, world_env

pytestmark = pytest.mark.slow

# Not auth: any answer except these means the request reached the operation's own code.
AUTH_ONLY = frozenset({401, 403, 429})
SLOW_JOBS = frozenset({"training", "etl"})
# Status codes seen per operation ("GET /v1/products"), filled by test_api_schema.
SEEN: defaultdict[str, Counter[int]] = defaultdict(Counter)


class FuzzedServer:
    """The running server, its admin key and the loaded schema."""

    def __init__(self, server: ApiServer, key: str, schema: Any) -> None:
        self.server = server
        self.key = key
        self.schema = schema


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzedServer]:
    var_dir = tmp_path_factory.mktemp("schemathesis-world")
    database_url = f"sqlite:///{var_dir / 'nextoffer.db'}"
    build_world(var_dir, database_url)
    env = world_env(var_dir, database_url)
    env["NEXTOFFER_RATE_LIMIT_PER_MINUTE"] = "0"
    key = create_key(env, "admin")
    server = ApiServer(env, var_dir / "server.log").start()
    try:
        config = schemathesis.Config.from_dict(
            {
                "headers": {"X-API-Key": key},
                "generation": {"deterministic": True},
            }
        )
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=config)
        yield FuzzedServer(server, key, schema)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def api_schema(fuzzed: FuzzedServer) -> Any:
    return fuzzed.schema


schema = schemathesis.pytest.from_fixture("api_schema")


def starts_slow_job(case: Case) -> bool:
    return (
        case.operation.path == "/v1/jobs"
        and isinstance(case.body, dict)
        and case.body.get("kind") in SLOW_JOBS
    )


@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_schema(case: Case, fuzzed: FuzzedServer) -> None:
    if starts_slow_job(case):
        return
    response = case.call(headers={"X-API-Key": fuzzed.key}, timeout=30)
    SEEN[f"{case.operation.method.upper()} {case.operation.path}"][response.status_code] += 1
    case.validate_response(
        response,
        checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
    )


def test_every_operation_got_past_auth(fuzzed: FuzzedServer) -> None:
    operations = {
        f"{result.ok().method.upper()} {result.ok().path}"
        for result in fuzzed.schema.get_all_operations()
    }
    assert SEEN, "test_api_schema did not run first"
    missing = sorted(operations - SEEN.keys())
    assert not missing, f"never called: {missing}"
    stuck = {op: dict(codes) for op, codes in SEEN.items() if set(codes) <= AUTH_ONLY}
    assert not stuck, f"only ever answered 401/403/429: {stuck}"
    server_errors = {op: dict(codes) for op, codes in SEEN.items() if any(c >= 500 for c in codes)}
    assert not server_errors, f"5xx answers: {server_errors}"
