"""Faults against real processes: the API keeps answering while Redis or PostgreSQL is down.

No monkeypatching: a private `redis-server` and a private PostgreSQL cluster are started on
free ports, stopped mid-test and started again, while the real API server (a subprocess)
keeps serving. Redis down: every request still gets offers, from the database, flagged as
degraded. PostgreSQL down: cached offers are still served, events are spooled to a local
file and, once the database is back, stored exactly once.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import cycle
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import create_engine, text

from nextoffer.cache.redis_cache import DEFAULT_RETRY_AFTER_S
from tests.e2e.private_servers import (
    PostgresCluster,
    RedisServer,
    postgres_bin_dir,
    require_program,
)
from tests.e2e.server import ApiServer, build_world, copy_world, create_key, world_env

pytestmark = pytest.mark.slow

# A small world of its own for PostgreSQL: the test is about the processes, not the data.
CUSTOMERS = 300
# Far above what the client loop sends: the limiter keeps counting (in Redis, then in the
# process while Redis is down) but never answers 429 here.
RATE_LIMIT = "1000000"
# The PostgreSQL test's API remembers a verified key this long, so the outage outlasts it:
# the key must still be accepted (on its last check) while the database cannot be asked.
AUTH_CACHE_S = 1.0


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `check` until true; fail with `what` when `timeout_s` passes first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@pytest.fixture
def servers() -> Iterator[list[ApiServer]]:
    """API servers a test starts; every one is stopped at teardown, pass or fail."""
    started: list[ApiServer] = []
    yield started
    for server in started:
        server.stop()


def start_api(
    servers: list[ApiServer], env: dict[str, str], var_dir: Path, **extra: str
) -> ApiServer:
    """`nextoffer serve` on `env` plus `extra` settings, registered for teardown."""
    server = ApiServer(
        {**env, "NEXTOFFER_RATE_LIMIT_PER_MINUTE": RATE_LIMIT, **extra},
        var_dir / "api.log",
    )
    servers.append(server)
    return server.start()


def offers_ids(body: dict[str, Any]) -> list[str]:
    """The product ids of an offers answer, best first."""
    return [offer["product_id"] for offer in body["offers"]]


# --- Redis stopped mid-test -----------------------------------------------------------


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server on a free port, stopped at teardown."""
    server = RedisServer(require_program("redis-server"), tmp_path / "redis.log")
    try:
        yield server.start()
    finally:
        server.stop()


@dataclass
class Outcome:
    """One offers request of the client loop: the phase it was sent in and what came back."""

    phase: str
    customer_id: str
    status: int
    body: dict[str, Any] | None
    error: str = ""


@dataclass
class ClientLoop:
    """A thread asking for offers over and over, recording every outcome."""

    url: str
    key: str
    customers: list[str]
    phase: str = "before"
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> ClientLoop:
        self._thread = threading.Thread(target=self._run, name="offers-client", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            assert not self._thread.is_alive(), "the client loop did not stop"

    def _run(self) -> None:
        headers = {"X-API-Key": self.key}
        with httpx.Client(base_url=self.url, headers=headers, timeout=10.0) as client:
            for customer_id in cycle(self.customers):
                if self._stop.is_set():
                    return
                phase = self.phase  # read before sending: the request belongs to this phase
                try:
                    response = client.get(f"/v1/customers/{customer_id}/offers")
                except httpx.HTTPError as exc:
                    self.outcomes.append(Outcome(phase, customer_id, 0, None, repr(exc)))
                    continue
                try:
                    body = response.json()
                except ValueError:
                    body = None
                self.outcomes.append(Outcome(phase, customer_id, response.status_code, body))
                time.sleep(0.005)

    def in_phase(self, phase: str) -> list[Outcome]:
        return [o for o in list(self.outcomes) if o.phase == phase]

    def served_from_cache(self, phase: str) -> bool:
        return any(o.body and o.body.get("source") == "cache" for o in self.in_phase(phase))


def customers_with_offers(database_url: str, count: int) -> dict[str, list[str]]:
    """`count` customers whose precomputed offers are not empty: id → product ids."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT customer_id, offers FROM precomputed_offers ORDER BY customer_id")
            ).all()
    finally:
        engine.dispose()
    found: dict[str, list[str]] = {}
    for customer_id, offers in rows:
        stored = offers if isinstance(offers, list) else json.loads(offers)
        if stored:
            found[str(customer_id)] = [str(o["product_id"]) for o in stored]
        if len(found) == count:
            break
    assert len(found) == count, f"only {len(found)} customers with precomputed offers"
    return found


def test_redis_stopped_mid_test_fails_no_request(
    tmp_path: Path, sqlite_world: Path, redis_server: RedisServer, servers: list[ApiServer]
) -> None:
    var_dir = copy_world(sqlite_world, tmp_path / "world")
    database_url = f"sqlite:///{var_dir / 'nextoffer.db'}"
    env = world_env(var_dir, database_url, cache_url=redis_server.url)
    key = create_key(env, "viewer")
    api = start_api(servers, env, var_dir)
    customers = list(customers_with_offers(database_url, 12))

    loop = ClientLoop(api.url, key, customers).start()
    try:
        # Before: answers go into Redis and repeated customers come back from it.
        wait_for(
            lambda: (
                len(loop.in_phase("before")) >= 3 * len(customers)
                and loop.served_from_cache("before")
            ),
            30,
            "answers from the Redis cache",
        )
        loop.phase = "stopping"  # requests racing the stop may see Redis either way
        redis_server.stop()  # returns once redis-server has exited
        loop.phase = "down"
        outage_started = time.monotonic()
        wait_for(
            # Long enough for the breaker to let probes through more than once.
            lambda: (
                time.monotonic() - outage_started > 2.5 * DEFAULT_RETRY_AFTER_S
                and len(loop.in_phase("down")) >= 2 * len(customers)
            ),
            30,
            "requests during the Redis outage",
        )
        ready = httpx.get(f"{api.url}/ready", timeout=10.0)
        loop.phase = "restarting"
        redis_server.start()  # the same port, empty: nothing persisted
        loop.phase = "after"
        wait_for(lambda: loop.served_from_cache("after"), 30, "answers from Redis again")
    finally:
        loop.stop()

    outcomes = list(loop.outcomes)
    failed = [o for o in outcomes if o.status != 200]
    assert not failed, f"{len(failed)} of {len(outcomes)} requests failed, first: {failed[0]}"
    bodies = [o.body for o in outcomes]
    assert all(b is not None and b["offers"] for b in bodies), "an answer without offers"

    before, down, after = (loop.in_phase(p) for p in ("before", "down", "after"))
    assert before and down and after
    for outcome in before:
        assert outcome.body is not None
        assert outcome.body["degraded"] is False, outcome
        assert outcome.body["source"] in {"cache", "precomputed"}, outcome
    # While Redis is down every answer comes from the database and says why it is degraded.
    for outcome in down:
        assert outcome.body is not None
        assert outcome.body["source"] == "precomputed", outcome
        assert outcome.body["degraded"] is True, outcome
        assert "cache unavailable" in outcome.body["notes"], outcome
    # Once the breaker's probe finds Redis back, answers are cached and served from it again.
    back = [o for o in after if o.body and o.body["source"] == "cache"]
    assert back and all(o.body and o.body["degraded"] is False for o in back)

    # The same offers whichever way they were found: the outage changes where, not what.
    answers: dict[str, set[tuple[str, ...]]] = {}
    for outcome in outcomes:
        assert outcome.body is not None
        answers.setdefault(outcome.customer_id, set()).add(tuple(offers_ids(outcome.body)))
    assert all(len(seen) == 1 for seen in answers.values()), answers

    # Readiness during the outage: still 200, degraded, naming the cache as down.
    assert ready.status_code == 200, ready.text
    readiness = ready.json()
    assert readiness["status"] == "degraded"
    assert readiness["components"]["cache"]["status"] == "down"
    assert readiness["components"]["database"]["status"] == "ok"
    assert "Traceback" not in api.log_tail(100_000)


# --- PostgreSQL stopped and restarted mid-test ----------------------------------------


@pytest.fixture
def pg_cluster() -> Iterator[PostgresCluster]:
    """A private PostgreSQL cluster on a free port, stopped and removed at teardown."""
    cluster = PostgresCluster(postgres_bin_dir())
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


EVENT_TYPES = ("offer_impression", "offer_click", "offer_accept", "offer_decline")


def make_events(offers: dict[str, list[str]], count: int) -> list[dict[str, str]]:
    """`count` events with client-given ids, for known customers and products."""
    run = uuid.uuid4().hex[:8]
    pairs = [(c, p) for c, products in offers.items() for p in products[:2]]
    assert len(pairs) >= count
    return [
        {
            "event_id": f"fault-{run}-{i:03d}",
            "customer_id": customer_id,
            "event_type": EVENT_TYPES[i % len(EVENT_TYPES)],
            "product_id": product_id,
            "channel": "app",
        }
        for i, (customer_id, product_id) in enumerate(pairs[:count])
    ]


def stored_rows(
    conninfo: str, ids: list[str]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(events rows, contact_history rows) whose id is one of `ids`, all fields compared."""
    with psycopg.connect(conninfo) as conn:
        events = conn.execute(
            "SELECT event_id, customer_id, event_type, product_id, channel FROM events"
            " WHERE event_id = ANY(%s) ORDER BY event_id",
            (ids,),
        ).fetchall()
        contacts = conn.execute(
            "SELECT contact_id, customer_id, product_id, channel FROM contact_history"
            " WHERE contact_id = ANY(%s) ORDER BY contact_id",
            (ids,),
        ).fetchall()
    return events, contacts


def check_outage(
    client: httpx.Client,
    cluster: PostgresCluster,
    api: ApiServer,
    var_dir: Path,
    warmed: dict[str, list[str]],
    cold: str,
) -> None:
    """Warm, stop PostgreSQL, read and write through the API, restart, check the database.

    `warmed` customers are asked for offers before the outage, `cold` only during it.
    """

    # Warm: the first answer comes from the database and is cached; the second from the cache.
    cached: dict[str, list[dict[str, Any]]] = {}
    for customer_id, products in warmed.items():
        first = client.get(f"/v1/customers/{customer_id}/offers")
        assert first.status_code == 200, first.text
        assert first.json()["source"] == "precomputed"
        assert offers_ids(first.json()) == products[: len(first.json()["offers"])]
        second = client.get(f"/v1/customers/{customer_id}/offers")
        assert second.json()["source"] == "cache"
        cached[customer_id] = second.json()["offers"]

    cluster.stop("fast")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(cluster.conninfo, connect_timeout=3).close()
    time.sleep(AUTH_CACHE_S + 0.5)  # the key's remembered check expires during the outage

    # Cached answers are still served, unchanged and not degraded.
    for customer_id, offers in cached.items():
        response = client.get(f"/v1/customers/{customer_id}/offers")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["source"] == "cache"
        assert body["offers"] == offers
        assert body["degraded"] is False
    # A customer whose answer is not cached still gets one, flagged, instead of an error.
    response = client.get(f"/v1/customers/{cold}/offers")
    assert response.status_code == 200, response.text
    assert response.json()["source"] == "fallback"
    assert response.json()["degraded"] is True
    assert "database unavailable" in response.json()["notes"]

    # Events are accepted into the spool (202); some batches are sent twice, as a client
    # retrying after a lost answer would, with the same event ids.
    events = make_events(warmed, 30)
    batches = [events[0:10], events[10:20], events[20:30], events[0:10], events[15:25]]
    for batch in batches:
        response = client.post("/v1/events", json={"events": batch})
        assert response.status_code == 202, response.text
        answer = response.json()
        assert answer["spooled"] == len(batch)
        assert answer["accepted"] == len(batch)
        assert (answer["stored"], answer["duplicates"], answer["rejected"]) == (0, 0, [])
        assert answer["event_ids"] == [e["event_id"] for e in batch]
    spooled = sum(len(batch) for batch in batches)

    ready = client.get("/ready")
    assert ready.status_code == 200, ready.text  # the in-process cache still answers
    readiness = ready.json()
    assert readiness["status"] == "degraded"
    assert readiness["components"]["database"]["status"] == "down"
    assert readiness["components"]["event_spool"] == {
        "status": "degraded",
        "detail": f"{spooled} events waiting",
    }
    spool_files = list((var_dir / "spool").glob("events-*"))
    assert spool_files, "no spool file while the database is down"

    cluster.start()

    def spool_empty() -> bool:
        components: dict[str, dict[str, str]] = client.get("/ready").json()["components"]
        return (
            components["database"]["status"] == "ok"
            and components["event_spool"]["detail"] == "0 events waiting"
        )

    try:
        wait_for(spool_empty, 60, "the spool to be replayed")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{api.log_tail()}") from None
    assert not list((var_dir / "spool").glob("events-*")), "a replayed spool file was kept"

    # Exactly once: every id once, with the fields that were sent; impressions also once
    # in the contact history (the contact caps count them), other events not at all there.
    ids = [e["event_id"] for e in events]
    expected_events = [
        (e["event_id"], e["customer_id"], e["event_type"], e["product_id"], "app")
        for e in sorted(events, key=lambda e: e["event_id"])
    ]
    expected_contacts = [
        (e["event_id"], e["customer_id"], e["product_id"], "app")
        for e in sorted(events, key=lambda e: e["event_id"])
        if e["event_type"] == "offer_impression"
    ]
    stored_events, stored_contacts = stored_rows(cluster.conninfo, ids)
    assert stored_events == expected_events
    assert stored_contacts == expected_contacts
    assert len(expected_contacts) == 8  # i % 4 == 0 for i in 0..29

    # Sent again with the database up: all duplicates, nothing new stored.
    again = client.post("/v1/events", json={"events": events})
    assert again.status_code == 201, again.text
    answer = again.json()
    assert (answer["stored"], answer["duplicates"], answer["spooled"]) == (0, len(events), 0)
    assert stored_rows(cluster.conninfo, ids) == (stored_events, stored_contacts)

    # And the API answers from the database again, no longer degraded.
    customer_id = events[0]["customer_id"]
    response = client.get(f"/v1/customers/{customer_id}/offers")
    assert response.status_code == 200, response.text
    assert response.json()["degraded"] is False
    assert response.json()["source"] in {"precomputed", "live", "cache"}


def test_postgres_stopped_and_restarted_loses_and_duplicates_no_event(
    tmp_path: Path, pg_cluster: PostgresCluster, servers: list[ApiServer]
) -> None:
    var_dir = tmp_path / "var"
    database_url = pg_cluster.url()
    build_world(var_dir, database_url, customers=CUSTOMERS)
    env = world_env(var_dir, database_url)  # memory:// cache, in the API process
    key = create_key(env, "writer")  # a writer may read offers too
    api = start_api(
        servers,
        env,
        var_dir,
        NEXTOFFER_SPOOL_REPLAY_S="0.5",
        NEXTOFFER_AUTH_CACHE_S=str(AUTH_CACHE_S),
    )
    warmed = customers_with_offers(database_url, 21)
    cold = list(warmed).pop()
    del warmed[cold]
    with httpx.Client(base_url=api.url, headers={"X-API-Key": key}, timeout=15.0) as client:
        check_outage(client, pg_cluster, api, var_dir, warmed, cold)
    assert "Traceback" not in api.log_tail(100_000)
