"""M4: an accept recorded while Redis is away still leaves the cached answer once Redis is back.

The app runs in process on a real, private redis-server that is frozen (SIGSTOP: it keeps
its data, as a Redis behind a broken network does) while the customer accepts an offer,
then thawed. The answer cached before the outage names the accepted product; the first
answer after Redis is back must not, and the entry must be gone from Redis itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from nextoffer.asgi import create_app
from nextoffer.cache import CacheUnavailableError, MemoryCache
from nextoffer.cache.deferred import DeferredDeletes
from nextoffer.cache.redis_cache import RedisCache
from nextoffer.config import Settings
from nextoffer.domain.roles import Role
from nextoffer.domain.slate import Offer, dump_offers
from nextoffer.platform import Platform
from nextoffer.serving.api_keys import create_api_key
from nextoffer.serving.offers import offers_key
from nextoffer.store.engine import make_engine
from nextoffer.store.migrate import upgrade
from tests.integration.experiment_world import add_customers, add_products
from tests.integration.test_cache_redis import REDIS_HOST, PrivateRedis, private_redis

__all__ = ["private_redis"]  # the fixture, used by name below

CUSTOMER = "C0001"
BREAKER_S = 0.2


def offer(product_id: str) -> Offer:
    """An offer of `product_id` as an answer cached before the outage held it."""
    return Offer(product_id, f"Product {product_id}", "addon", 0.5, 0.5, 1.0, ("cached",), "v1")


@pytest.fixture
def app(tmp_path: Path, private_redis: PrivateRedis) -> Iterator[tuple[TestClient, Platform]]:
    database_url = f"sqlite:///{tmp_path / 'nextoffer.db'}"
    engine = make_engine(database_url)
    upgrade(engine)
    add_products(engine)
    add_customers(engine, [CUSTOMER])
    settings = Settings(
        database_url=database_url,
        var_dir=tmp_path / "var",
        registry_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifacts_url=f"file://{tmp_path / 'artifacts'}",
        otlp_endpoint="",
        rate_limit_per_minute=0,
    )
    cache = RedisCache(f"redis://{REDIS_HOST}:{private_redis.port}/0", retry_after_s=BREAKER_S)
    created = create_app(settings, engine=engine, cache=cache)
    try:
        with TestClient(created) as client:
            client.headers["X-API-Key"] = create_api_key(engine, "m4", Role.WRITER)[1]
            yield client, created.state.platform
    finally:
        engine.dispose()


def answer(client: TestClient) -> dict[str, Any]:
    """The customer's offers (asserted 200)."""
    response = client.get(f"/v1/customers/{CUSTOMER}/offers")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.integration
def test_an_accept_during_a_redis_outage_leaves_the_cached_answer_once_redis_is_back(
    app: tuple[TestClient, Platform], private_redis: PrivateRedis
) -> None:
    client, platform = app
    key = offers_key(CUSTOMER, platform.services.state.stamp, None)
    admin = redis.Redis(host=REDIS_HOST, port=private_redis.port)
    admin.set(key, dump_offers([offer("P1"), offer("P2")]))
    before = answer(client)
    assert (before["source"], [o["product_id"] for o in before["offers"]]) == (
        "cache",
        ["P1", "P2"],
    )

    private_redis.pause()
    try:
        accepted = client.post(
            "/v1/events",
            json={"customer_id": CUSTOMER, "event_type": "offer_accept", "product_id": "P1"},
        )
        assert accepted.status_code == 201 and accepted.json()["stored"] == 1, accepted.text
        during = answer(client)
        assert during["source"] != "cache" and during["degraded"] is True
        assert "cache unavailable" in during["notes"]
    finally:
        private_redis.resume()
    assert admin.exists(key) == 1  # Redis kept the stale answer through the outage

    time.sleep(2 * BREAKER_S)  # the breaker lets its probe through
    after = answer(client)
    assert "P1" not in [o["product_id"] for o in after["offers"]], after
    assert after["source"] != "cache" and "cache unavailable" not in after["notes"]
    assert admin.exists(key) == 0
    assert platform.services.offers.flush_pending() is True
    admin.close()


class FlakyCache(MemoryCache):
    """A memory cache that can be made unreachable."""

    down = False

    def delete(self, *keys: str) -> int:
        if self.down:
            raise CacheUnavailableError("memory://", "down for the test")
        return super().delete(*keys)

    def delete_prefix(self, prefix: str) -> int:
        if self.down:
            raise CacheUnavailableError("memory://", "down for the test")
        return super().delete_prefix(prefix)


def test_deferred_deletes_wait_for_the_cache_and_fall_back_to_the_prefix() -> None:
    cache = FlakyCache()
    for name in ("offers:a", "offers:b", "offers:c", "other:x"):
        cache.set(name, "1")
    drops = DeferredDeletes(cache, "offers:", max_pending=2)
    cache.down = True
    drops.delete(["offers:a"])
    assert drops.pending == 1 and drops.flush() is False
    drops.delete(["offers:b", "offers:c"])  # past max_pending: the whole prefix instead
    assert drops.pending == 1
    cache.down = False
    assert cache.get("offers:a") == "1"
    assert drops.flush() is True and drops.pending == 0
    assert [cache.get(k) for k in ("offers:a", "offers:b", "offers:c", "other:x")] == [
        None,
        None,
        None,
        "1",
    ]
