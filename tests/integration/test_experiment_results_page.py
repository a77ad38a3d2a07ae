"""From served answers to the API's results and the Experiments page, on SQLite and PostgreSQL.

A hand-made world with no model (answers come from the popular lists) runs an experiment of
a `control` variant (shows nothing; its would-have-been answer is logged) against a
`treatment` (popular products). Customers are served through the API, which records their
exposures (flushed here rather than by the background thread); events are posted through
the API only for products actually shown; acquisitions, churn and complaints are loaded as
an ingest would. The API's results and the console page must show the numbers computed by
hand from the database's rows: units per variant, conversions, impressions and clicks, the
per-unit conversion difference, and the sample-ratio check.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from nextoffer.asgi import create_app
from nextoffer.cache.memory import MemoryCache
from nextoffer.config import Settings
from nextoffer.domain.experiment_stats import analyse_units
from nextoffer.domain.experiments import Strategy, Variant, assign
from nextoffer.domain.exposures import Arm, new_exposure
from nextoffer.domain.roles import Role
from nextoffer.platform import Platform
from nextoffer.serving.api_keys import create_api_key
from nextoffer.serving.users import create_user
from nextoffer.store.engine import make_engine
from nextoffer.store.migrate import upgrade
from nextoffer.store.schema import Exposure
from tests.experiment_by_hand import by_hand
from tests.integration.experiment_world import PRODUCTS, Rows, add_customers, add_products

DESIGN = (Variant("control", Strategy.CONTROL), Variant("treatment", Strategy.POPULAR))
PER_ARM = 110
CUSTOMERS = [f"C{i:04d}" for i in range(400)]
PASSWORD = "experiment-viewer-password"
WINDOW_DAYS = 30


@dataclass
class World:
    """The app on a hand-made world, its keys, and a signed-in console client."""

    engine: Engine
    app: FastAPI
    client: TestClient
    keys: dict[str, str]

    def headers(self, role: str) -> dict[str, str]:
        """The X-API-Key header of a key with `role`."""
        return {"X-API-Key": self.keys[role]}

    @property
    def platform(self) -> Platform:
        """The platform the app serves with."""
        platform: Platform = self.app.state.platform
        return platform

    def start(self, name: str, design: tuple[Variant, ...] = DESIGN) -> str:
        """Start an experiment through the API; its id."""
        body = {
            "name": name,
            "unit": "customer",
            "variants": [{"name": v.name, "strategy": v.strategy.value} for v in design],
        }
        made = self.client.post("/v1/experiments", json=body, headers=self.headers("operator"))
        assert made.status_code == 201, made.text
        return str(made.json()["experiment_id"])

    def results(self, experiment_id: str) -> dict[str, Any]:
        """GET the results (asserted 200)."""
        found = self.client.get(
            f"/v1/experiments/{experiment_id}/results", headers=self.headers("viewer")
        )
        assert found.status_code == 200, found.text
        body: dict[str, Any] = found.json()
        return body


def build(database_url: str, tmp: Path) -> tuple[Engine, Settings]:
    """Products, customers, and past purchases that make the popular lists."""
    engine = make_engine(database_url)
    upgrade(engine)
    add_products(engine)
    add_customers(engine, CUSTOMERS)
    past = Rows.empty()
    now = datetime.now(UTC)
    for i in range(60):
        # P1 most popular, then P2, ...: the treatment's answer is P1, P2, P3.
        product = PRODUCTS[min(i // 12, len(PRODUCTS) - 1)]
        past.bought(CUSTOMERS[-1 - i], product, now - timedelta(days=20, minutes=i))
    past.write(engine)
    settings = Settings(
        database_url=database_url,
        var_dir=tmp / "var",
        registry_uri=f"sqlite:///{tmp / 'mlflow.db'}",
        artifacts_url=f"file://{tmp / 'artifacts'}",
        exposure_flush_s=3600,  # the test flushes when it wants to look
        impact_window_days=WINDOW_DAYS,
        console_secure_cookies=False,
    )
    return engine, settings


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> Iterator[World]:
    engine, settings = build(database_url, tmp_path)
    keys = {
        role: create_api_key(engine, f"exp {role}", Role(role))[1]
        for role in ("viewer", "writer", "operator")
    }
    create_user(engine, "viewer1", PASSWORD, Role.VIEWER)
    app = create_app(settings, engine=engine, cache=MemoryCache())
    with TestClient(app) as client:
        yield World(engine, app, client, keys)
    engine.dispose()


_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def page_of(world: World, experiment_id: str) -> str:
    """The console's page of the experiment, signed in as a viewer."""
    token = _TOKEN.search(world.client.get("/login").text)
    assert token
    world.client.post(
        "/login",
        data={"username": "viewer1", "password": PASSWORD, "csrf_token": token[1]},
        follow_redirects=False,
    )
    page = world.client.get(f"/experiments/{experiment_id}")
    assert page.status_code == 200, page.text
    text: str = page.text
    return text


def rows_of(page: str, table: str) -> list[dict[str, str]]:
    """The data-* attributes of each row of the table with id `table`."""
    body = page[page.index(f'id="{table}"') :]
    body = body[: body.index("</table>")]
    return [
        dict(re.findall(r'data-([a-z-]+)="([^"]*)"', tag))
        for tag in re.findall(r"<tr [^>]*data-variant[^>]*>", body)
    ]


def post_events(world: World, events: list[dict[str, Any]]) -> None:
    """Post events through the API (asserted all stored)."""
    for start in range(0, len(events), 500):
        batch = events[start : start + 500]
        answer = world.client.post(
            "/v1/events", json={"events": batch}, headers=world.headers("writer")
        )
        assert answer.status_code == 201, answer.text
        assert answer.json()["stored"] == len(batch)


def test_served_answers_to_the_api_and_the_page(world: World) -> None:
    """Then, on the same world, a skewed split flagged on the page."""
    experiment_id = world.start("popular vs nothing")
    arms: dict[str, list[str]] = {"control": [], "treatment": []}
    for customer in CUSTOMERS:
        arm = arms[assign(experiment_id, customer, DESIGN).name]
        if len(arm) < PER_ARM:
            arm.append(customer)
    assert all(len(arm) == PER_ARM for arm in arms.values())

    shown: dict[str, list[str]] = {}
    for name, customers in arms.items():
        for i, customer in enumerate(customers):
            for _ in range(2 if i % 10 == 0 else 1):  # served twice: still one unit
                answer = world.client.get(
                    f"/v1/customers/{customer}/offers",
                    params={"k": 3},
                    headers=world.headers("viewer"),
                )
                assert answer.status_code == 200, answer.text
                body = answer.json()
                assert body["experiment"]["variant"] == name
            shown[customer] = [o["product_id"] for o in body["offers"]]
            assert (shown[customer] == []) == (name == "control"), body
    flushed = world.platform.services.exposures.flush()
    assert flushed.stored == 2 * PER_ARM

    # Responses only to what was shown: the control shows nothing, so it posts nothing.
    events = []
    for i, customer in enumerate(arms["treatment"]):
        products = shown[customer]
        events += [
            {"customer_id": customer, "event_type": "offer_impression", "product_id": p}
            for p in products
        ]
        if i % 3 == 0:
            events.append(
                {"customer_id": customer, "event_type": "offer_click", "product_id": products[0]}
            )
        if i % 8 == 0:
            events.append(
                {"customer_id": customer, "event_type": "offer_accept", "product_id": products[0]}
            )
    post_events(world, events)

    # Outcomes as the ingest would load them, timed after each customer's exposure.
    with world.engine.connect() as conn:
        exposed = {
            row.customer_id: row
            for row in conn.execute(
                select(Exposure.__table__).where(Exposure.experiment_id == experiment_id)
            )
        }
    later = Rows.empty()
    for i, customer in enumerate(arms["control"]):
        would = exposed[customer].product_ids.split("|")
        after = exposed[customer].exposed_at + timedelta(days=2)
        if i % 9 == 0:
            later.bought(customer, would[0], after)  # acquired a would-have-been offer
        if i % 9 == 1:
            later.bought(customer, "P6", after)  # not offered: does not count
        if i % 11 == 0:
            later.event(customer, "network_complaint", after, product=None)
        if i % 12 == 0:
            later.churned(customer, after.date() + timedelta(days=1))
    for i, customer in enumerate(arms["treatment"]):
        after = exposed[customer].exposed_at + timedelta(days=3)
        if i % 10 == 5:
            later.bought(customer, shown[customer][1], after)
        if i % 13 == 0:
            later.bought(customer, shown[customer][0], after + timedelta(days=40))  # too late
    later.write(world.engine)

    hand = by_hand(world.engine, experiment_id, WINDOW_DAYS)
    for name, customers in arms.items():
        assert sorted(c for c, v in hand.variant.items() if v == name) == sorted(customers)
    results = world.results(experiment_id)
    assert results["unit"] == "customer" and results["control"] == "control"
    assert results["window_days"] == WINDOW_DAYS and results["ctr_compared"] is False
    variants = {v["variant"]: v for v in results["variants"]}
    for name in ("control", "treatment"):
        got = variants[name]
        assert got["units"] == hand.units(name) == PER_ARM
        assert got["converted"] == hand.total(hand.converted, name)
        assert got["impressions"] == hand.total(hand.impressions, name)
        assert got["clicks"] == hand.total(hand.clicks, name)
        assert got["complaints"] == hand.total(hand.complaints, name)
        assert got["churned"] == hand.total(hand.churned, name)
        assert got["designed_share"] == pytest.approx(0.5)
    assert variants["control"]["impressions"] == 0
    assert variants["treatment"]["impressions"] == sum(len(shown[c]) for c in arms["treatment"])
    ratio = results["sample_ratio"]
    assert ratio["observed"] == {"control": PER_ARM, "treatment": PER_ARM}
    assert ratio["p_value"] == pytest.approx(1.0) and ratio["flagged"] is False

    conv_c = hand.total(hand.converted, "control") / PER_ARM
    conv_t = hand.total(hand.converted, "treatment") / PER_ARM
    conversion = variants["treatment"]["metrics"][0]
    assert conversion["metric"] == "conversion" and conversion["enough_data"] is True
    assert conversion["difference"] == pytest.approx(conv_t - conv_c, rel=1e-12)
    expected = analyse_units(hand.outcomes(ctr=False), ["control", "treatment"])
    want = expected.variant("treatment").metrics
    assert [m["metric"] for m in variants["treatment"]["metrics"]] == [m.metric.value for m in want]
    for got, exp in zip(variants["treatment"]["metrics"], want, strict=True):
        assert got["enough_data"] == exp.enough_data
        assert got["verdict"] == exp.verdict
        if exp.enough_data:
            assert (got["ci_low"], got["ci_high"]) == pytest.approx((exp.low, exp.high))
            assert got["adjusted_p"] == pytest.approx(exp.adjusted_p)

    page = page_of(world, experiment_id)
    assert 'data-flagged="no"' in page and 'id="srm-flag"' not in page
    units = {row["variant"]: row for row in rows_of(page, "units")}
    for name in ("control", "treatment"):
        assert int(units[name]["units"]) == hand.units(name)
        assert int(units[name]["converted"]) == hand.total(hand.converted, name)
        assert int(units[name]["impressions"]) == hand.total(hand.impressions, name)
        assert int(units[name]["clicks"]) == hand.total(hand.clicks, name)
    metrics = {row["metric"]: row for row in rows_of(page, "metrics")}
    assert float(metrics["conversion"]["difference"]) == pytest.approx(conv_t - conv_c)
    assert float(metrics["conversion"]["low"]) == pytest.approx(want[0].low)
    assert metrics["conversion"]["enough"] == "yes"
    assert "always valid" in page and "Holm-adjusted over the 3 comparisons" in page
    assert "CTR is not compared" in page
    assert "more impressions" not in page and "needed" not in page

    # One experiment runs at a time: stop this one, then a skewed one on the same world.
    stopped = world.client.post(
        f"/v1/experiments/{experiment_id}/stop", headers=world.headers("operator")
    )
    assert stopped.status_code == 200, stopped.text
    check_a_skewed_split_is_flagged(world)


def check_a_skewed_split_is_flagged(world: World) -> None:
    """Exposures recorded for the treatment only (the control's logging lost): flagged."""
    experiment_id = world.start("lost control logging")
    recorder = world.platform.services.exposures
    now = datetime.now(UTC)
    treated = [c for c in CUSTOMERS if assign(experiment_id, c, DESIGN).name == "treatment"]
    for customer in treated[:40]:
        recorder.record(
            new_exposure(
                customer,
                now,
                Arm.TREATED,
                ["P1"],
                experiment_id=experiment_id,
                variant="treatment",
            )
        )
    assert recorder.flush().stored == 40
    ratio = world.results(experiment_id)["sample_ratio"]
    assert ratio["observed"] == {"control": 0, "treatment": 40} and ratio["flagged"] is True
    page = page_of(world, experiment_id)
    assert 'id="srm-flag"' in page and 'data-flagged="yes"' in page
    assert "Sample ratio mismatch — do not trust these results." in page
