"""`nextoffer.client` against the real server: the same answers as raw HTTP, batches equal
to singles, typed problems, every page of the catalogue, 429s honoured, async alike."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from nextoffer.client import (
    AsyncClient,
    AuthError,
    Client,
    NotFoundError,
    RateLimitedError,
    RetryPolicy,
    ValidationError,
)
from tests.e2e.conftest import Api
from tests.e2e.limited import use_up


def client_of(api: Api, role: str = "viewer", **options: object) -> Client:
    return Client(api.url, api_key=api.keys[role], **options)  # type: ignore[arg-type]


def test_answers_equal_the_raw_http_answers(api: Api) -> None:
    customer = api.take(1)[0]
    api.get(f"/v1/customers/{customer}/offers", k=3)  # warm: both reads below hit the cache
    with client_of(api) as client:
        offers = client.offers(customer, k=3)
        assert (
            offers.model_dump(mode="json")
            == api.get(f"/v1/customers/{customer}/offers", k=3).json()
        )
        assert offers.customer_id == customer and offers.offers
        risk = client.churn_risk(customer, history=2)
        assert (
            risk.model_dump(mode="json")
            == api.get(f"/v1/customers/{customer}/churn-risk", history=2).json()
        )
        segment = client.segment(customer)
        assert (
            segment.model_dump(mode="json") == api.get(f"/v1/customers/{customer}/segment").json()
        )
        assert client.health().status == "ok"
        experiments = client.experiments()
        assert [e.model_dump(mode="json") for e in experiments] == api.get("/v1/experiments").json()
    with client_of(api, "operator") as operator:
        models = operator.models()
        assert models.champions["offers"] is not None
        assert any(v.kind == "offers" and v.is_champion for v in models.versions)


def test_a_batch_equals_the_single_answers(api: Api) -> None:
    ids = api.take(4)
    with client_of(api) as client:
        first = client.offers_batch(ids, k=2)  # warms the cache for the singles below
        singles = [client.offers(c, k=2) for c in ids]
        again = client.offers_batch([*ids, "NOBODY-0002"], k=2)
        risks = client.churn_risk_batch(ids[:2], history=1)
    assert [item.customer_id for item in first] == ids
    assert [item.answer for item in again[:4]] == singles
    assert again[4].status == 404 and again[4].answer is None
    assert again[4].problem is not None and "NOBODY-0002" in again[4].problem.detail
    with client_of(api) as client:
        assert [item.answer for item in risks] == [client.churn_risk(c, history=1) for c in ids[:2]]


def test_problems_are_raised_typed(api: Api) -> None:
    with client_of(api) as client:
        with pytest.raises(NotFoundError) as missing:
            client.offers("NOBODY-0003")
        assert missing.value.status == 404
        assert missing.value.title == "Not Found"
        assert "NOBODY-0003" in missing.value.detail
        assert missing.value.request_id
        with pytest.raises(ValidationError) as invalid:
            client.offers_batch([])
        assert invalid.value.status == 422 and "customer_ids" in invalid.value.detail
        with pytest.raises(AuthError) as forbidden:
            client.models()  # operators only
        assert forbidden.value.status == 403
    with Client(api.url, api_key="not-a-key") as stranger, pytest.raises(AuthError) as unknown:
        stranger.offers("C1")
    assert unknown.value.status == 401


def test_pagination_walks_every_page(api: Api) -> None:
    with client_of(api) as client:
        everything = client.products(limit=500)
        assert everything.total == len(everything.items) > 7
        walked = list(client.iter_products(page_size=7))
        active = list(client.iter_products(active=True, page_size=7))
    assert [p.product_id for p in walked] == [p.product_id for p in everything.items]
    assert walked == everything.items
    assert active == [p for p in everything.items if p.active]


def test_events_are_posted_once_even_when_sent_twice(api: Api) -> None:
    customer = api.take(1)[0]
    with client_of(api) as reader:
        product = reader.products(limit=1).items[0].product_id
    event = {
        "event_id": f"client-{uuid.uuid4().hex}",
        "customer_id": customer,
        "event_type": "offer_click",
        "product_id": product,
    }
    with client_of(api, "writer") as client:
        first = client.post_events([event])
        second = client.post_events([event])
    assert (first.stored, first.event_ids) == (1, [event["event_id"]])
    assert (second.stored, second.duplicates) == (0, 1)


def test_a_429_is_honoured_then_raised_typed(limited: Api) -> None:
    customer = limited.take(1)[0]
    key = limited.keys["client"]  # a window of its own
    refused = use_up(limited, customer, key)
    server_wait = float(refused.headers["Retry-After"])
    slept: list[float] = []
    policy = RetryPolicy(max_attempts=3, jitter_s=0.0)
    with (
        Client(limited.url, api_key=key, retry=policy, sleep=slept.append) as client,
        pytest.raises(RateLimitedError) as raised,
    ):
        client.offers(customer)
    # Three attempts, each refusal waited for exactly as long as the server asked.
    assert len(slept) == 2
    assert all(abs(wait - server_wait) <= 2 for wait in slept)
    assert raised.value.status == 429 and raised.value.retry_after_s == pytest.approx(
        slept[-1], abs=1
    )
    assert raised.value.request_id


def test_the_async_client_answers_the_same(sqlite_api: Api) -> None:
    ids = sqlite_api.take(3)
    with client_of(sqlite_api) as sync:
        sync.offers_batch(ids, k=2)  # warm: every answer below comes from the cache
        singles = [sync.offers(c, k=2) for c in ids]
        products = sync.products(limit=500).items

    async def run() -> None:
        async with AsyncClient(sqlite_api.url, api_key=sqlite_api.keys["viewer"]) as client:
            batch = await client.offers_batch(ids, k=2)
            assert [item.answer for item in batch] == singles
            assert await client.offers(ids[0], k=2) == singles[0]
            assert [p async for p in client.iter_products(page_size=9)] == products
            with pytest.raises(NotFoundError):
                await client.churn_risk("NOBODY-0004")

    # In a thread of its own: an earlier browser test's Playwright session may still hold
    # an event loop on the main thread, where asyncio.run refuses to start another.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, run()).result()
