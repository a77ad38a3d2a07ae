"""Reads on a streaming replica (NEXTOFFER_DATABASE_READ_URL), writes on the primary.

A private primary cluster gets a copy of the trained SQLite world; `pg_basebackup -R` makes
a private streaming standby of it. Both log every statement, so the logs show which server
each query went to. The real API server then answers through the standby, its writes land
on the primary and reach the standby, and when the standby stops the answers keep coming,
from the primary, until it is back.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from nextoffer.store.engine import make_engine
from nextoffer.store.migrate import upgrade
from nextoffer.store.replica import RETRY_S
from tests.e2e.private_servers import PostgresCluster, postgres_bin_dir
from tests.e2e.server import ApiServer, copy_world, create_key, world_env
from tests.e2e.world_copy import copy_rows
from tests.helpers import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.integration]

DB = "nextoffer"


@dataclass
class Replicated:
    """The API on a primary and its standby, with a key of each role it needs."""

    primary: PostgresCluster
    standby: PostgresCluster
    server: ApiServer
    client: httpx.Client
    viewer: dict[str, str]
    writer: dict[str, str]

    def conninfo(self, cluster: PostgresCluster) -> str:
        """libpq connection string of the world's database on `cluster`."""
        return cluster.conninfo.replace("dbname=postgres", f"dbname={DB}")

    def query(self, cluster: PostgresCluster, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Rows of `sql` run on `cluster` (a fresh connection, autocommit)."""
        with psycopg.connect(self.conninfo(cluster), autocommit=True) as conn:
            return conn.execute(sql, args).fetchall()

    def offers(self, customer: str) -> dict[str, Any]:
        """GET the customer's offers (asserted 200)."""
        response = self.client.get(
            f"/v1/customers/{customer}/offers", params={"k": 10}, headers=self.viewer
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def ready(self) -> dict[str, Any]:
        """The readiness document (200 while anything can be served)."""
        response = self.client.get("/ready")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


def log_size(cluster: PostgresCluster) -> int:
    """Where the server log ends now (reads after it are what came since)."""
    return cluster.log_path.stat().st_size


def log_since(cluster: PostgresCluster, offset: int) -> str:
    """What the server logged after `offset`."""
    with cluster.log_path.open("rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")


@pytest.fixture
def replicated(sqlite_world: Path, tmp_path: Path) -> Iterator[Replicated]:
    """The trained world on a private primary and standby, the API reading the standby."""
    bin_dir = postgres_bin_dir()
    primary, standby = PostgresCluster(bin_dir), PostgresCluster(bin_dir)
    server: ApiServer | None = None
    try:
        primary.init().start()
        with psycopg.connect(primary.conninfo, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DB}")
        var_dir = copy_world(sqlite_world, tmp_path / "world")
        source, target = (
            make_engine(f"sqlite:///{var_dir / 'nextoffer.db'}"),
            make_engine(primary.url(DB)),
        )
        upgrade(target)
        copy_rows(source, target)
        source.dispose()
        target.dispose()
        with psycopg.connect(primary.conninfo, autocommit=True) as conn:
            # After the copy (its inserts stay out of the log); the standby inherits it.
            conn.execute("ALTER SYSTEM SET log_statement = 'all'")
            conn.execute("SELECT pg_reload_conf()")
        standby.standby_of(primary).start()
        env = world_env(var_dir, primary.url(DB))
        env.update(
            NEXTOFFER_DATABASE_READ_URL=standby.url(DB),
            NEXTOFFER_CONTROL_GROUP_SHARE="0",
            NEXTOFFER_RATE_LIMIT_PER_MINUTE="100000",
        )
        with ThreadPoolExecutor(max_workers=2) as pool:
            viewer, writer = pool.map(lambda role: create_key(env, role), ("viewer", "writer"))
        server = ApiServer(env, tmp_path / "api.log").start()
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            yield Replicated(
                primary,
                standby,
                server,
                client,
                {"X-API-Key": viewer.strip()},
                {"X-API-Key": writer.strip()},
            )
    finally:
        if server is not None:
            server.stop()
        standby.destroy()
        primary.destroy()


def precomputed_ids(world: Replicated, cluster: PostgresCluster, customer: str) -> list[str]:
    """The customer's precomputed offers (product ids, best first) as stored on `cluster`."""
    [(offers,)] = world.query(
        cluster, "SELECT offers FROM precomputed_offers WHERE customer_id = %s", customer
    )
    return [o["product_id"] for o in offers]


def ids(body: dict[str, Any]) -> list[str]:
    """The product ids of an offers answer, best first."""
    return [o["product_id"] for o in body["offers"]]


def test_reads_go_to_the_replica_writes_to_the_primary_and_answers_survive_its_loss(
    replicated: Replicated,
) -> None:
    world = replicated
    [(standby_mode,)] = world.query(world.standby, "SELECT pg_is_in_recovery()")
    assert standby_mode is True
    first, second, third = (
        row[0]
        for row in world.query(
            world.primary,
            "SELECT customer_id FROM precomputed_offers ORDER BY customer_id LIMIT 3",
        )
    )
    replica = world.ready()["components"]["read_replica"]
    assert replica["status"] == "ok" and replica["detail"].startswith("lag "), replica

    # An answer read through the standby: the primary's precomputed offers, and the
    # standby's log, not the primary's, shows the read.
    on_primary, on_standby = log_size(world.primary), log_size(world.standby)
    answer = world.offers(first)
    assert "precomputed_offers" in log_since(world.standby, on_standby)
    assert "precomputed_offers" not in log_since(world.primary, on_primary)
    assert answer["source"] == "precomputed" and not answer["degraded"], answer
    assert ids(answer)
    assert ids(answer) == precomputed_ids(world, world.primary, first)[: len(ids(answer))]

    # A write through the API lands on the primary and streams to the standby.
    event_id = f"replica-{uuid.uuid4().hex}"
    event = {
        "event_id": event_id,
        "customer_id": second,
        "event_type": "offer_impression",
        "product_id": ids(answer)[0],
    }
    stored = world.client.post("/v1/events", json={"events": [event]}, headers=world.writer)
    assert stored.status_code == 201 and stored.json()["stored"] == 1, stored.text
    find = "SELECT count(*) FROM events WHERE event_id = %s"
    assert world.query(world.primary, find, event_id) == [(1,)]
    wait_until(
        lambda: world.query(world.standby, find, event_id) == [(1,)],
        10,
        "the event on the standby",
    )
    # A change made on the primary shows in an API read served by the standby.
    renamed = f"Renamed {uuid.uuid4().hex[:6]}"
    [(product,)] = world.query(
        world.primary,
        "UPDATE products SET name = %s WHERE product_id = "
        "(SELECT min(product_id) FROM products) RETURNING product_id",
        renamed,
    )

    def listed_name() -> str:
        page = world.client.get("/v1/products", params={"limit": 500}, headers=world.viewer)
        assert page.status_code == 200, page.text
        return str({p["product_id"]: p["name"] for p in page.json()["items"]}[product])

    wait_until(lambda: listed_name() == renamed, 10, "the new name through the standby")

    # The standby stops: answers keep coming, from the primary, and readiness says so.
    world.standby.stop()
    on_primary = log_size(world.primary)
    answer = world.offers(third)
    assert "precomputed_offers" in log_since(world.primary, on_primary)
    assert answer["source"] == "precomputed" and not answer["degraded"], answer
    assert ids(answer) == precomputed_ids(world, world.primary, third)[: len(ids(answer))]
    ready = world.ready()
    replica = ready["components"]["read_replica"]
    assert replica["status"] == "degraded" and replica["detail"].startswith("down"), ready
    assert ready["status"] == "degraded", ready
    assert "reads go to the primary" in world.server.log_tail()

    # Back again: after RETRY_S the reads return to the standby.
    world.standby.start()
    on_standby = log_size(world.standby)

    def read_on_standby() -> bool:
        world.client.get("/v1/products", params={"limit": 1}, headers=world.viewer)
        return "FROM products" in log_since(world.standby, on_standby)

    wait_until(read_on_standby, RETRY_S + 10, "reads back on the standby")
    assert world.ready()["components"]["read_replica"]["status"] == "ok"
