"""Three API processes and two Celery workers sharing one PostgreSQL and one Redis.

The trained SQLite world is copied into a fresh PostgreSQL database; its registry and model
files are shared by every process, as a volume would be. Redis holds the cache (database
CACHE_DB) and the broker (BROKER_DB). Each test drives the processes the way a load
balancer would: the same customer, or the same key, through each of them in turn.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select

from nextoffer.domain.roles import Role
from nextoffer.serving.api_keys import create_api_key
from nextoffer.store.engine import make_engine
from nextoffer.store.schema import Customer, JobRun
from tests.conftest import require_service
from tests.e2e.server import NEXTOFFER, ApiServer, copy_world, free_port, world_env
from tests.e2e.world_copy import postgres_copy
from tests.helpers import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.integration]

PROCESSES = 3
WORKERS = 2
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
# Redis databases no other test uses, so FLUSHDB cannot hurt anyone's data.
BROKER_DB, CACHE_DB = 8, 9
REFRESH_S = 1.0
"""NEXTOFFER_SERVING_REFRESH_S of every API process."""
PROMOTION_MARGIN_S = 20.0
"""Beyond REFRESH_S, for each process to load the new champion's files on a busy machine."""
RATE_LIMIT = 90
"""Requests per minute per key; the tests other than the rate limit's stay far below it."""
TRAIN_CUSTOMERS = 1000
"""The training job's sample (the smallest allowed): the job is there to run, not to win."""
KEYS = {
    "viewer": Role.VIEWER,
    "limited": Role.VIEWER,
    "poll0": Role.VIEWER,
    "poll1": Role.VIEWER,
    "poll2": Role.VIEWER,
    "writer": Role.WRITER,
    "operator": Role.OPERATOR,
    "admin": Role.ADMIN,
}


@dataclass
class Worker:
    """A `nextoffer worker` subprocess and its JSON-lines log."""

    log_path: Path
    process: subprocess.Popen[bytes]

    def records(self) -> list[dict[str, Any]]:
        """Every JSON log line so far."""
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def stop(self) -> None:
        """SIGTERM the worker's process group, SIGKILL it after 15 s."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


@dataclass
class Site:
    """The API processes (behind no balancer: tests pick one), the workers, the database."""

    clients: list[httpx.Client]
    servers: list[ApiServer]
    workers: list[Worker]
    keys: dict[str, str]
    engine: Engine

    def get(self, process: int, path: str, key: str = "viewer", **params: Any) -> httpx.Response:
        """GET `path` on API process `process` with key `key`."""
        return self.clients[process].get(path, params=params, headers={"X-API-Key": self.keys[key]})

    def post(self, process: int, path: str, body: Any, key: str) -> httpx.Response:
        """POST `body` as JSON to `path` on API process `process` with key `key`."""
        return self.clients[process].post(path, json=body, headers={"X-API-Key": self.keys[key]})

    def offers(self, process: int, customer: str, key: str = "viewer") -> dict[str, Any]:
        """The customer's offers from one process (asserted 200)."""
        response = self.get(process, f"/v1/customers/{customer}/offers", key, k=5)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def customers(self, n: int, skip: int = 0) -> list[str]:
        """`n` customer ids, in id order after the first `skip`."""
        with self.engine.connect() as conn:
            query = select(Customer.customer_id).order_by(Customer.customer_id)
            return list(conn.execute(query.offset(skip).limit(n)).scalars())


def _start_worker(env: dict[str, str], log_path: Path) -> Worker:
    env = {
        **env,
        "NEXTOFFER_LOG_LEVEL": "INFO",
        "NEXTOFFER_WORKER_METRICS_PORT": str(free_port()),
    }
    with log_path.open("wb") as log:
        # Its own session, so that teardown ends the pool process with its parent.
        process = subprocess.Popen(
            [NEXTOFFER, "worker", "--queues", "etl,training,ops", "--concurrency", "1"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Worker(log_path, process)


def _relocate(database: Path, old: str, new: str) -> None:
    """Rewrite every path under `old` to `new` in an SQLite file (a copied world's registry).

    MLflow keeps absolute artifact locations; a copy whose registry still points into the
    original would write new versions there (and MLflow refuses a changed location).
    """
    with sqlite3.connect(database) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for column in conn.execute(f'PRAGMA table_info("{table}")').fetchall():
                if "CHAR" in column[2].upper() or "TEXT" in column[2].upper():
                    name = column[1]
                    conn.execute(
                        f'UPDATE "{table}" SET "{name}" = replace("{name}", ?, ?) '
                        f'WHERE "{name}" LIKE ?',
                        (old, new, f"%{old}%"),
                    )


def _flush_redis() -> None:
    import redis

    for db in (BROKER_DB, CACHE_DB):
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
        client.flushdb()
        client.close()


@pytest.fixture(scope="module")
def site(sqlite_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The trained world in fresh PostgreSQL, served by three API processes, two workers."""
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    _flush_redis()
    var_dir = copy_world(sqlite_world, tmp_path_factory.mktemp("scale-out") / "world")
    for database in ("mlflow.db", "nextoffer.db"):
        _relocate(var_dir / database, str(sqlite_world), str(var_dir))
    servers: list[ApiServer] = []
    workers: list[Worker] = []
    with postgres_copy(f"sqlite:///{var_dir / 'nextoffer.db'}") as database_url:
        engine = make_engine(database_url)
        env = world_env(var_dir, database_url, f"redis://{REDIS_HOST}:{REDIS_PORT}/{CACHE_DB}")
        env.update(
            NEXTOFFER_BROKER_URL=f"redis://{REDIS_HOST}:{REDIS_PORT}/{BROKER_DB}",
            NEXTOFFER_SERVING_REFRESH_S=str(REFRESH_S),
            NEXTOFFER_RATE_LIMIT_PER_MINUTE=str(RATE_LIMIT),
            NEXTOFFER_CONTROL_GROUP_SHARE="0",
            NEXTOFFER_RANKER_TRAIN_CUSTOMERS=str(TRAIN_CUSTOMERS),
            NEXTOFFER_JWT_SECRET=secrets.token_hex(32),  # the same on every process
            NEXTOFFER_PRIVACY_KEY=secrets.token_hex(32),
        )
        keys = {
            name: create_api_key(engine, f"scale-{name}", role)[1] for name, role in KEYS.items()
        }
        try:
            workers = [_start_worker(env, var_dir / f"worker{i}.log") for i in range(WORKERS)]
            servers = [ApiServer(env, var_dir / f"api{i}.log") for i in range(PROCESSES)]
            with ThreadPoolExecutor(max_workers=PROCESSES) as pool:
                list(pool.map(lambda server: server.start(timeout_s=120), servers))
            for worker in workers:
                wait_until(
                    lambda w=worker: (
                        w.process.poll() is not None
                        or any(r.get("message", "").endswith(" ready.") for r in w.records())
                    ),
                    90,
                    "a worker to start",
                )
                assert worker.process.poll() is None, worker.log_path.read_text()[-3000:]
            with contextlib.ExitStack() as stack:
                clients = [
                    stack.enter_context(httpx.Client(base_url=s.url, timeout=60.0)) for s in servers
                ]
                yield Site(clients, servers, workers, keys, engine)
        finally:
            for server in servers:
                server.stop()
            for worker in workers:
                worker.stop()
            engine.dispose()
            _flush_redis()


def test_every_process_gives_the_same_answer_and_the_same_experiment_variant(site: Site) -> None:
    customers = site.customers(12)
    for customer in customers[:4]:
        answers = [site.offers(p, customer) for p in range(PROCESSES)]
        assert answers[0]["offers"], answers[0]
        assert all(a["offers"] == answers[0]["offers"] for a in answers), answers
        assert len({a["model_version"] for a in answers}) == 1

    started = site.post(
        0,
        "/v1/experiments",
        {
            "name": f"scale-out {uuid.uuid4().hex[:6]}",
            "unit": "customer",
            "variants": [
                {"name": "ranker", "strategy": "champion", "weight": 1},
                {"name": "popular", "strategy": "popular", "weight": 1},
            ],
        },
        "operator",
    )
    assert started.status_code == 201, started.text
    experiment_id = started.json()["experiment_id"]
    try:
        # Each process sees the new experiment within its refresh interval.
        wait_until(
            lambda: all(
                (site.offers(p, customers[0])["experiment"] or {}).get("experiment_id")
                == experiment_id
                for p in range(PROCESSES)
            ),
            REFRESH_S + 10,
            "the experiment on every process",
        )
        variants: dict[str, str] = {}
        for customer in customers:
            answers = [site.offers(p, customer) for p in range(PROCESSES)]
            tags = [a["experiment"] for a in answers]
            assert all(t == tags[0] for t in tags), (customer, tags)
            assert tags[0]["experiment_id"] == experiment_id
            assert all(a["offers"] == answers[0]["offers"] for a in answers), answers
            variants[customer] = tags[0]["variant"]
        # Both arms were drawn: the agreement is not that of a one-armed experiment.
        assert set(variants.values()) == {"ranker", "popular"}, variants
    finally:
        stopped = site.post(0, f"/v1/experiments/{experiment_id}/stop", {}, "operator")
        assert stopped.status_code == 200, stopped.text
        wait_until(
            lambda: all(
                site.offers(p, customers[0])["experiment"] is None for p in range(PROCESSES)
            ),
            REFRESH_S + 10,
            "the experiment's end on every process",
        )


def test_rate_limits_are_shared_by_the_processes(site: Site) -> None:
    # The limit counts per minute: start early in one, so all calls fall in the same.
    if time.time() % 60 > 50:
        time.sleep(60.5 - time.time() % 60)
    [customer] = site.customers(1, skip=20)
    for call in range(RATE_LIMIT):
        response = site.get(call % PROCESSES, f"/v1/customers/{customer}/offers", "limited")
        assert response.status_code == 200, (call, response.text)
    for process in range(PROCESSES):
        refused = site.get(process, f"/v1/customers/{customer}/offers", "limited")
        assert refused.status_code == 429, (process, refused.text)
        assert int(refused.headers["retry-after"]) >= 1
    # Another key is not affected.
    assert site.get(0, f"/v1/customers/{customer}/offers").status_code == 200


def test_a_cache_invalidation_through_one_process_reaches_the_others(site: Site) -> None:
    [customer] = site.customers(1, skip=30)
    first = site.offers(0, customer)
    assert first["source"] != "cache" and len(first["offers"]) >= 2, first
    # Process 1 never answered this customer: the answer comes from the shared cache.
    cached = site.offers(1, customer)
    assert cached["source"] == "cache" and cached["offers"] == first["offers"], cached
    top = first["offers"][0]["product_id"]
    event = {
        "event_id": f"scale-{uuid.uuid4().hex}",
        "customer_id": customer,
        "event_type": "offer_accept",
        "product_id": top,
    }
    stored = site.post(2, "/v1/events", {"events": [event]}, "writer")
    assert stored.status_code == 201 and stored.json()["stored"] == 1, stored.text
    # Process 2 dropped the shared answer: process 1, which had it from the cache, computes
    # anew; then every process serves the new answer, without the accepted offer.
    again = site.offers(1, customer)
    assert again["source"] != "cache", again
    for process in range(PROCESSES):
        answer = site.offers(process, customer)
        assert answer["source"] == "cache" and answer["offers"] == again["offers"], answer
        assert top not in [o["product_id"] for o in answer["offers"]], (process, answer)


def _versions(site: Site) -> tuple[int | None, list[int]]:
    models = site.get(2, "/v1/models", "operator")
    assert models.status_code == 200, models.text
    body = models.json()
    versions = sorted(v["version"] for v in body["versions"] if v["kind"] == "offers")
    return body["champions"]["offers"], versions


def test_a_job_runs_once_on_a_worker_and_a_promotion_reaches_every_process(site: Site) -> None:
    _, before = _versions(site)
    # Enqueued through process 1, run by one of the two workers, exactly once.
    queued = site.post(
        1,
        "/v1/jobs",
        {"kind": "training", "params": {"models": ["offers"], "score": False}},
        "operator",
    )
    assert queued.status_code == 202, queued.text
    job_id = queued.json()["job_id"]
    status: dict[str, Any] = {}

    def finished() -> bool:
        nonlocal status
        polled = site.get(0, f"/v1/jobs/{job_id}", "operator")
        assert polled.status_code == 200, polled.text
        status = polled.json()
        return status["status"] not in ("queued", "running")

    wait_until(finished, 300, f"training job {job_id}", every_s=1.0)
    assert status["status"] == "succeeded", json.dumps(status)
    ran = [
        i
        for i, worker in enumerate(site.workers)
        for r in worker.records()
        if r.get("message") == "job training started"
    ]
    assert len(ran) == 1, ran
    with site.engine.connect() as conn:
        runs = conn.execute(
            select(func.count()).where(JobRun.job == "training", JobRun.run_id == job_id)
        ).scalar_one()
    assert runs == 1
    champion, after = _versions(site)
    assert len(after) == len(before) + 1, (before, after)

    # A promotion through process 0: every process answers with it within its refresh.
    target = next(v for v in reversed(after) if v != champion)
    promoted = site.post(0, "/v1/models/offers/champion", {"version": target}, "admin")
    assert promoted.status_code == 200, promoted.text
    start = time.monotonic()
    [customer] = site.customers(1, skip=40)
    seen: dict[int, float] = {}

    def everyone_serves_it() -> bool:
        for p in range(PROCESSES):
            if p not in seen and site.offers(p, customer, f"poll{p}")["model_version"] == (
                f"v{target}"
            ):
                seen[p] = round(time.monotonic() - start, 2)
        return len(seen) == PROCESSES

    wait_until(everyone_serves_it, REFRESH_S + PROMOTION_MARGIN_S, f"v{target} everywhere")
    print(f"promotion to v{target} seen by each process after (s): {seen}")
    for p in range(PROCESSES):
        serving = site.get(p, "/v1/models", "operator").json()["serving"]
        assert serving["offers"] == f"v{target}", (p, serving)
