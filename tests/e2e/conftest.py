"""One trained world per backend, built once per session, and the real API server on each.

`sqlite_api`: SQLite and the in-process memory cache. `postgres_api`: a fresh PostgreSQL
database and Redis database 13 (integration: skipped locally when either is missing,
failed under CI=true). `api` runs a test once on each. Tests share a server, so each takes
its own customers with `Api.take` and leaves no experiment running.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from nextoffer.config import Settings
from nextoffer.domain.control_group import in_control_group
from nextoffer.store.engine import make_engine
from nextoffer.store.schema import Customer
from tests.conftest import PG_HOST, PG_PORT, require_service
from tests.e2e.server import ApiServer, build_world, copy_world, create_key, world_env

ROLES = ("viewer", "writer", "operator", "admin")
REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
# A Redis database nothing else uses, so FLUSHDB cannot hurt anyone's data.
REDIS_DB = 13
# Settings every e2e server runs with: a short credentials cache, so that disabling a user
# shows within a second, a small body limit, so a 413 needs no megabyte upload, and a
# universal control group (held-out customers are only handed out when asked for).
CONTROL_GROUP_SHARE = 0.1
SERVER_SETTINGS = {
    "NEXTOFFER_AUTH_CACHE_S": "1",
    "NEXTOFFER_MAX_BODY_BYTES": "16384",
    "NEXTOFFER_CONTROL_GROUP_SHARE": str(CONTROL_GROUP_SHARE),
}


@dataclass
class Api:
    """A running server on a trained world: where it is, its keys, its database."""

    backend: str
    url: str
    env: dict[str, str]
    keys: dict[str, str]
    engine: Engine
    var_dir: Path
    server: ApiServer
    client: httpx.Client
    _used: set[str] = field(default_factory=set)

    def headers(self, role: str) -> dict[str, str]:
        """The X-API-Key header of a key with `role`."""
        return {"X-API-Key": self.keys[role]}

    def get(self, path: str, role: str = "viewer", **params: Any) -> httpx.Response:
        """GET `path` with a key of `role`."""
        return self.client.get(path, params=params, headers=self.headers(role))

    def post(self, path: str, body: Any, role: str = "writer") -> httpx.Response:
        """POST `body` as JSON to `path` with a key of `role`."""
        return self.client.post(path, json=body, headers=self.headers(role))

    def take(
        self, n: int, among: list[str] | None = None, *, control_group: bool = False
    ) -> list[str]:
        """`n` customers (from `among`, else all, by id) no other test has taken yet.

        Outside the universal control group, or inside it with `control_group=True`.
        """
        share = float(self.env.get("NEXTOFFER_CONTROL_GROUP_SHARE", "0"))
        salt = Settings.model_fields["control_group_salt"].default
        if among is None:
            with self.engine.connect() as conn:
                among = list(
                    conn.execute(select(Customer.customer_id).order_by(Customer.customer_id))
                    .scalars()
                    .all()
                )
        found = [
            c
            for c in among
            if c not in self._used and in_control_group(c, share, salt) == control_group
        ][:n]
        if len(found) < n:
            raise AssertionError(f"only {len(found)} unused customers of {len(among)} left")
        self._used.update(found)
        return found


def _keys(env: dict[str, str]) -> dict[str, str]:
    # Each key is a CLI process of about a second; they do not depend on each other.
    with ThreadPoolExecutor(max_workers=len(ROLES)) as pool:
        return dict(zip(ROLES, pool.map(lambda role: create_key(env, role), ROLES), strict=True))


@pytest.fixture(scope="session")
def sqlite_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained SQLite world nobody serves or writes: copy it (`copy_world`) to use it."""
    var_dir = tmp_path_factory.mktemp("sqlite-world")
    build_world(var_dir, f"sqlite:///{var_dir / 'nextoffer.db'}")
    return var_dir


def _serve(backend: str, var_dir: Path, env: dict[str, str]) -> Iterator[Api]:
    env = {**env, **SERVER_SETTINGS}
    keys = _keys(env)
    engine = make_engine(env["NEXTOFFER_DATABASE_URL"])
    server = ApiServer(env, var_dir / "api.log")
    try:
        server.start()
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            yield Api(backend, server.url, env, keys, engine, var_dir, server, client)
    finally:
        server.stop()
        engine.dispose()


@pytest.fixture(scope="session")
def sqlite_api(sqlite_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The server on a copy of the SQLite world, with the memory cache."""
    var_dir = copy_world(sqlite_world, tmp_path_factory.mktemp("sqlite-api") / "world")
    env = world_env(var_dir, f"sqlite:///{var_dir / 'nextoffer.db'}")
    yield from _serve("sqlite", var_dir, env)


@pytest.fixture(scope="session")
def postgres_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The server on a world in a fresh PostgreSQL database, cached in Redis database 13."""
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    import psycopg
    import redis

    name = f"nextoffer_e2e_{uuid.uuid4().hex[:12]}"
    admin = f"host={PG_HOST} port={PG_PORT} user=postgres dbname=postgres"
    flusher = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
    flusher.flushdb()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        database_url = f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{name}"
        var_dir = tmp_path_factory.mktemp("postgres-world")
        build_world(var_dir, database_url)
        cache_url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
        yield from _serve("postgres", var_dir, world_env(var_dir, database_url, cache_url))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        flusher.flushdb()
        flusher.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def api(request: pytest.FixtureRequest) -> Api:
    """Each test using this runs once against each backend's server."""
    served: Api = request.getfixturevalue(f"{request.param}_api")
    return served


@pytest.fixture(scope="session")
def limited(sqlite_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The SQLite world served with a limit of LOW_LIMIT requests a minute per key.

    Each test of the limit uses a key of its own (`keys[purpose]`), so each starts at zero.
    """
    from tests.e2e.limited import LOW_LIMIT

    var_dir = copy_world(sqlite_world, tmp_path_factory.mktemp("limited") / "world")
    env = {
        **world_env(var_dir, f"sqlite:///{var_dir / 'nextoffer.db'}"),
        "NEXTOFFER_RATE_LIMIT_PER_MINUTE": str(LOW_LIMIT),
    }
    purposes = ("batch", "client")
    with ThreadPoolExecutor(max_workers=len(purposes)) as pool:
        made = pool.map(lambda _p: create_key(env, "viewer"), purposes)
        keys = dict(zip(purposes, made, strict=True))
    engine = make_engine(env["NEXTOFFER_DATABASE_URL"])
    server = ApiServer(env, var_dir / "api.log").start()
    try:
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            yield Api("sqlite", server.url, env, keys, engine, var_dir, server, client)
    finally:
        server.stop()
        engine.dispose()
