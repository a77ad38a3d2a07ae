"""`POST /v1/offers:batch` and `/v1/churn-risk:batch` on the real server: each item is the
single call's answer, unknown customers are problem items, bad batches are 422 problems,
every customer read is audited, and a batch of N counts N against a real rate limit."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from sqlalchemy import select

from nextoffer.config import Settings
from nextoffer.domain.privacy import customer_digest
from nextoffer.serving.tokens import resolve_privacy_key
from nextoffer.store.schema import AuditRecord
from tests.e2e.conftest import Api
from tests.e2e.limited import LOW_LIMIT, fresh_window

UNKNOWN = "NOBODY-0001"


def _single_offers(api: Api, customer_id: str, **params: object) -> httpx.Response:
    return api.get(f"/v1/customers/{customer_id}/offers", **params)


def test_offers_batch_items_are_the_single_answers(api: Api) -> None:
    ids = api.take(5) + api.take(1, control_group=True)
    body = {"customer_ids": [*ids[:3], UNKNOWN, *ids[3:]], "k": 3}
    # The first answers may come from the precomputed table; later ones from the cache.
    # Warm both paths, then compare answers served the same way.
    assert api.post("/v1/offers:batch", body, role="viewer").status_code == 200
    singles = {c: _single_offers(api, c, k=3) for c in ids}
    batch = api.post("/v1/offers:batch", body, role="viewer")
    assert batch.status_code == 200, batch.text
    out = batch.json()
    assert [item["customer_id"] for item in out["items"]] == body["customer_ids"]
    assert (out["answered"], out["failed"]) == (len(ids), 1)
    for item in out["items"]:
        if item["customer_id"] == UNKNOWN:
            missing = _single_offers(api, UNKNOWN)
            assert missing.status_code == item["status"] == 404
            assert item["answer"] is None
            assert item["problem"]["status"] == 404
            assert item["problem"]["type"] == missing.json()["type"]
            assert item["problem"]["detail"] == missing.json()["detail"]
            continue
        assert item["status"] == 200 and item["problem"] is None
        assert item["answer"] == singles[item["customer_id"]].json()
    # Real content: the held-out customer's answer is withheld, the others offer something.
    assert out["items"][-1]["answer"]["control"] is True
    assert any(item["answer"] and item["answer"]["offers"] for item in out["items"][:3])


def test_offers_batch_takes_the_single_calls_options(api: Api) -> None:
    ids = api.take(3)
    for c in ids:  # warm: both answers below come from the cache
        _single_offers(api, c, k=2, channel="app")
    batch = api.post(
        "/v1/offers:batch", {"customer_ids": ids, "k": 2, "channel": "app"}, role="viewer"
    ).json()
    for c, item in zip(ids, batch["items"], strict=True):
        assert item["answer"] == _single_offers(api, c, k=2, channel="app").json()
        assert len(item["answer"]["offers"]) <= 2


def test_churn_risk_batch_items_are_the_single_answers(api: Api) -> None:
    ids = api.take(4)
    body = {"customer_ids": [ids[0], UNKNOWN, *ids[1:]], "history": 3}
    batch = api.post("/v1/churn-risk:batch", body, role="viewer")
    assert batch.status_code == 200, batch.text
    out = batch.json()
    assert [i["customer_id"] for i in out["items"]] == body["customer_ids"]
    for item in out["items"]:
        single = api.get(f"/v1/customers/{item['customer_id']}/churn-risk", history=3)
        assert item["status"] == single.status_code
        if single.status_code == 200:
            assert item["answer"] == single.json()
            assert 0.0 <= item["answer"]["score"] <= 1.0
        else:
            assert item["problem"]["detail"] == single.json()["detail"]
    assert out["answered"] >= 1 and out["failed"] >= 1


@pytest.mark.parametrize(
    "ids",
    [[], ["C1", "C2", "C1"], [f"c{i}" for i in range(1001)], ["bad id"]],
    ids=["empty", "duplicate", "too-many", "bad-id"],
)
def test_a_bad_batch_is_a_422_problem(api: Api, ids: list[str]) -> None:
    for path in ("/v1/offers:batch", "/v1/churn-risk:batch"):
        answer = api.post(path, {"customer_ids": ids}, role="viewer")
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json()["status"] == 422
        assert "customer_ids" in answer.json()["detail"]


def test_batches_need_the_single_calls_role(api: Api) -> None:
    ids = api.take(1)
    for path in ("/v1/offers:batch", "/v1/churn-risk:batch"):
        anonymous = api.client.post(path, json={"customer_ids": ids})
        assert anonymous.status_code == 401
        assert anonymous.headers["content-type"].startswith("application/problem+json")


def test_every_customer_of_a_batch_is_audited(api: Api) -> None:
    ids = [*api.take(3), UNKNOWN]
    request_id = uuid.uuid4().hex
    answer = api.client.post(
        "/v1/offers:batch",
        json={"customer_ids": ids},
        headers={**api.headers("viewer"), "X-Request-ID": request_id},
    )
    assert answer.status_code == 200
    key = resolve_privacy_key(Settings(var_dir=api.var_dir))
    rows: list[AuditRecord] = []
    deadline = time.monotonic() + 15  # the trail is written every 2 s, off the request
    while time.monotonic() < deadline:
        with api.engine.connect() as conn:
            rows = list(
                conn.execute(
                    select(AuditRecord.__table__).where(AuditRecord.request_id == request_id)
                )
            )
        if len(rows) >= len(ids):
            break
        time.sleep(0.3)
    assert sorted(r.customer_digest for r in rows) == sorted(customer_digest(key, c) for c in ids)
    assert {r.action for r in rows} == {"customer.read"}
    assert {r.target for r in rows} == {"POST /v1/offers:batch"}
    assert all(c not in str(r) for r in rows for c in ids)  # digests only, never the id
    statuses = sorted(r.detail["status"] if isinstance(r.detail, dict) else 0 for r in rows)
    assert statuses == [200, 200, 200, 404]


# --- a real rate limit: a server of its own on a copy of the SQLite world ------------------
# (a batch larger than the whole limit, and Redis: tests/unit/test_batch_limits.py)


def test_a_batch_counts_each_id_against_a_real_limit(limited: Api) -> None:
    ids = limited.take(4)
    key = {"X-API-Key": limited.keys["batch"]}  # a window of its own

    def batch() -> httpx.Response:
        return limited.client.post("/v1/offers:batch", json={"customer_ids": ids[:3]}, headers=key)

    def single() -> httpx.Response:
        return limited.client.get(f"/v1/customers/{ids[3]}/offers", headers=key)

    fresh_window()
    first = batch()
    assert first.status_code == 200, first.text  # 3 of LOW_LIMIT used
    assert len(first.json()["items"]) == 3
    refused = batch()
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "items" not in refused.json()
    assert f"{LOW_LIMIT - 3} were left" in refused.json()["detail"]
    # The refused batch counted once, not three times: one single call still fits.
    assert single().status_code == 200
    assert single().status_code == 429
