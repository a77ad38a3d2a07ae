"""The universal control group and exposures through the API, the console and campaign exports.

On a copy of the small rules world (`tests/integration/rules_world`) served twice on one
database: with `control_group_share` 0.3 (the app under test) and with share 0 and no
exposures (the reference: what the treatment answers). A held-out customer gets no offer
and `control: true`, and its exposure names exactly the reference answer; a treated
customer's exposure names what it was served; one exposure a customer a day; with the
database down the exposure is spooled and written once when it returns. An experiment's
control variant is measured the same way, and events tagged with a variant other than the
customer's are refused (the forged-variant attack). Exports skip held-out customers.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, select

from nextoffer.asgi import create_app
from nextoffer.cache.memory import MemoryCache
from nextoffer.config import Settings
from nextoffer.domain.control_group import in_control_group
from nextoffer.domain.experiments import Strategy, Variant, assign
from nextoffer.domain.roles import Role
from nextoffer.platform import Platform, build_platform
from nextoffer.serving.api_keys import create_api_key
from nextoffer.serving.exposures import ExposureRecorder, ExposureReplay, FlushResult
from nextoffer.store import exposures as exposure_store
from nextoffer.store.engine import make_engine
from nextoffer.store.schema import ControlGroupMember, Event, Exposure, PrecomputedOffers
from nextoffer.usecases.campaigns import CampaignRequest, export_campaign
from nextoffer.usecases.customers import customer_360
from nextoffer.usecases.experiments import start_experiment, stop_experiment
from tests.integration.rules_world import RulesWorld, rules_world

SHARE = 0.3
PICK = 4
VARIANTS = (Variant("control", Strategy.CONTROL), Variant("treatment", Strategy.CHAMPION))


@dataclass
class App:
    """One app on the world: its TestClient, platform and keys."""

    app: FastAPI
    client: TestClient
    keys: dict[str, str]

    @property
    def platform(self) -> Platform:
        """The platform the app serves with (its recorder, its experiment book)."""
        platform: Platform = self.app.state.platform
        return platform

    def answer(self, customer: str, **params: Any) -> dict[str, Any]:
        """GET the customer's offers (asserted 200)."""
        response = self.client.get(
            f"/v1/customers/{customer}/offers", params=params, headers=self.header("viewer")
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def header(self, role: str) -> dict[str, str]:
        """The X-API-Key header of a key with `role`."""
        return {"X-API-Key": self.keys[role]}

    def flush(self) -> FlushResult:
        """Write the queued exposures now (the background flusher would, within seconds)."""
        return self.platform.services.exposures.flush()


@dataclass
class World:
    """The app under test, the reference app, and the database they share."""

    settings: Settings
    engine: Engine
    held: App
    reference: App
    customers: list[str]
    """Customers with precomputed offers, by id."""

    def members(self) -> list[str]:
        """Customers of the control group at `SHARE`."""
        salt = self.settings.control_group_salt
        return [c for c in self.customers if in_control_group(c, SHARE, salt)]

    def others(self) -> list[str]:
        """Customers outside it."""
        held = set(self.members())
        return [c for c in self.customers if c not in held]


def ids(body: dict[str, Any]) -> list[str]:
    """The product ids of an answer, best first."""
    return [o["product_id"] for o in body["offers"]]


def exposures_of(engine: Engine, customer: str) -> list[Any]:
    """The customer's stored exposures."""
    with engine.connect() as conn:
        query = select(Exposure.__table__).where(Exposure.customer_id == customer)
        return list(conn.execute(query).all())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    source: RulesWorld = rules_world(tmp_path_factory)
    root = source.copy(tmp_path_factory.mktemp("control-group") / "world")
    # The background flusher waits an hour: each test flushes when it wants to look.
    settings = source.settings(root, control_group_share=SHARE, exposure_flush_s=3600)
    reference = source.settings(root, control_group_share=0.0, exposures_enabled=False)
    engine = make_engine(settings.database_url)
    with engine.begin() as conn:  # a world copied after other tests served it starts clean
        conn.execute(delete(Exposure))
        conn.execute(delete(ControlGroupMember))
        customers = sorted(conn.execute(select(PrecomputedOffers.customer_id)).scalars())
    keys = {
        role: create_api_key(engine, f"cg {role}", Role(role))[1] for role in ("viewer", "writer")
    }
    held_app = create_app(settings, engine=engine, cache=MemoryCache())
    reference_app = create_app(reference, engine=engine, cache=MemoryCache())
    try:
        with TestClient(held_app) as held, TestClient(reference_app) as ref:
            yield World(
                settings,
                engine,
                App(held_app, held, keys),
                App(reference_app, ref, keys),
                [str(c) for c in customers],
            )
    finally:
        engine.dispose()


def with_offers(world: World, customers: list[str], n: int) -> dict[str, list[str]]:
    """The first `n` of `customers` the reference (the treatment) offers something, and what."""
    found: dict[str, list[str]] = {}
    for customer in customers:
        offered = ids(world.reference.answer(customer))
        if offered:
            found[customer] = offered
        if len(found) == n:
            return found
    raise AssertionError(f"only {len(found)} of {len(customers)} customers get offers")


def test_held_out_customers_get_no_offer_and_log_what_the_treatment_would_have_given(
    world: World,
) -> None:
    members, others = world.members(), world.others()
    assert 0.2 < len(members) / len(world.customers) < 0.4
    would = with_offers(world, members, PICK)
    served = with_offers(world, others, PICK)
    today = datetime.now(UTC).date()

    for customer in would:
        first, again = world.held.answer(customer), world.held.answer(customer)
        for body in (first, again):
            assert body["control"] is True and body["offers"] == []
            assert body["source"] == "control" and body["experiment"] is None
    for customer, expected in served.items():
        body = world.held.answer(customer)
        assert body["control"] is False and ids(body) == expected
        world.held.answer(customer)  # twice the same day: still one exposure
    assert world.held.flush() == FlushResult(stored=2 * PICK)

    for customer, expected in [*would.items(), *served.items()]:
        [row] = exposures_of(world.engine, customer)
        arm = "control" if customer in would else "treated"
        assert (row.exposure_id, row.arm, row.product_ids.split("|")) == (
            f"{customer}@{today.isoformat()}",
            arm,
            expected,
        )
        assert (row.source, row.unit_id, row.experiment_id, row.variant) == (
            "api",
            customer,
            None,
            None,
        )
        assert row.model_version == world.reference.answer(customer)["model_version"]
    entries = {e.customer_id: e for e in exposure_store.control_group_rows(world.engine)}
    assert set(entries) == set(would)
    assert {(e.entered_on, e.left_on, e.share) for e in entries.values()} == {(today, None, SHARE)}

    metrics = world.held.client.get("/metrics").text
    assert f'nextoffer_exposures_recorded_total{{arm="control",source="api"}} {float(PICK)}' in (
        metrics
    )
    assert f'nextoffer_exposures_recorded_total{{arm="treated",source="api"}} {float(PICK)}' in (
        metrics
    )


def test_the_console_page_shows_the_answer_without_recording_an_exposure(world: World) -> None:
    services = world.held.platform.services
    [customer] = list(with_offers(world, world.members()[PICK * 3 :], 1))
    view = customer_360(services, customer)
    assert view.offers.control and view.offers.offers == [] and view.offers.withheld
    assert services.exposures.pending() == 0
    assert exposures_of(world.engine, customer) == []


def test_exposures_spool_while_the_database_is_down_and_are_written_once(
    world: World, tmp_path: Path
) -> None:
    recorder: ExposureRecorder = world.held.platform.services.exposures
    [customer] = list(with_offers(world, world.others()[PICK * 3 :], 1))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port}/x?connect_timeout=1")
    try:
        recorder.engine = down  # only the recorder loses the database: the answer still comes
        offered = ids(world.held.answer(customer))
        assert recorder.flush() == FlushResult(spooled=1)
        assert recorder.spool_depth() == 1 and exposures_of(world.engine, customer) == []
    finally:
        recorder.engine = world.engine
        down.dispose()
    assert recorder.replay() == ExposureReplay(stored=1)
    assert recorder.replay() == ExposureReplay()
    [row] = exposures_of(world.engine, customer)
    assert (row.arm, row.product_ids.split("|")) == ("treated", offered)


def post_events(world: World, events: list[dict[str, Any]]) -> Any:
    """POST /v1/events as a writer."""
    return world.held.client.post(
        "/v1/events", json={"events": events}, headers=world.held.header("writer")
    )


def test_experiment_control_is_measured_and_forged_variants_are_refused(world: World) -> None:
    services = world.held.platform.services
    members = set(world.members())
    pool = [c for c in world.others()[PICK * 4 :]]
    reference = with_offers(world, pool, 12)  # before the experiment: the champion's answers
    experiment = start_experiment(services, "forged variants", "customer", VARIANTS, "test")
    try:
        by_variant: dict[str, list[str]] = {"control": [], "treatment": []}
        for customer in reference:
            by_variant[assign(experiment.experiment_id, customer, VARIANTS).name].append(customer)
        assert by_variant["control"] and by_variant["treatment"]
        control, treatment = by_variant["control"][0], by_variant["treatment"][0]

        body = world.held.answer(control)
        assert body["control"] is True and body["offers"] == []
        assert body["experiment"]["variant"] == "control"
        assert ids(world.held.answer(treatment)) == reference[treatment]
        world.held.flush()
        [row] = exposures_of(world.engine, control)
        assert (row.arm, row.experiment_id, row.variant, row.unit_id) == (
            "control",
            experiment.experiment_id,
            "control",
            control,
        )
        assert row.product_ids.split("|") == reference[control]
        assert row.exposure_id.endswith(f"#{experiment.experiment_id}")
        [row] = exposures_of(world.engine, treatment)
        assert (row.arm, row.variant, row.product_ids.split("|")) == (
            "treated",
            "treatment",
            reference[treatment],
        )

        # The attack: a control customer's impressions and accepts tagged "treatment".
        product = reference[control][0]
        forged = [
            {
                "event_id": f"forged-{kind}-{n}",
                "customer_id": control,
                "event_type": kind,
                "product_id": product,
                "experiment_id": experiment.experiment_id,
                "variant": "treatment",
            }
            for n in range(20)
            for kind in ("offer_impression", "offer_accept")
        ]
        refused = post_events(world, forged)
        assert refused.status_code == 422, refused.text
        problem = refused.json()
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert problem["type"].endswith("/validation-error")
        assert problem["expected"] == {
            "experiment_id": experiment.experiment_id,
            "variant": "control",
        }
        assert "'control'" in problem["detail"] and "'treatment'" in problem["detail"]
        with world.engine.connect() as conn:
            stored = conn.execute(select(Event.event_id).where(Event.customer_id == control))
            assert not [e for e in stored.scalars() if e.startswith("forged-")]

        # A held-out customer is in no experiment: any tag is refused, naming none.
        member = sorted(members)[0]
        tagged = {**forged[0], "event_id": "member-tag", "customer_id": member}
        answer = post_events(world, [tagged])
        assert answer.status_code == 422
        assert answer.json()["expected"] == {"experiment_id": None, "variant": None}

        # The right tag, or none, is accepted; the server's tag is what is stored.
        honest = {**forged[0], "event_id": "honest-tag", "variant": "control"}
        untagged = {
            "event_id": "untagged",
            "customer_id": treatment,
            "event_type": "offer_impression",
            "product_id": reference[treatment][0],
        }
        accepted = post_events(world, [honest, untagged])
        assert accepted.status_code == 201, accepted.text
        with world.engine.connect() as conn:
            tags = dict(
                (e, (x, v))
                for e, x, v in conn.execute(
                    select(Event.event_id, Event.experiment_id, Event.variant).where(
                        Event.event_id.in_(["honest-tag", "untagged"])
                    )
                )
            )
        assert tags == {
            "honest-tag": (experiment.experiment_id, "control"),
            "untagged": (experiment.experiment_id, "treatment"),
        }
    finally:
        stop_experiment(services, experiment.experiment_id)


@pytest.fixture
def exporters(world: World) -> Iterator[tuple[Platform, Platform]]:
    """Fresh platforms (nothing queued yet today) at `SHARE` and at share 0."""
    with world.engine.begin() as conn:
        conn.execute(delete(Exposure))
    reference = world.settings.model_copy(update={"control_group_share": 0.0})
    platforms = [
        build_platform(s, engine=world.engine, cache=MemoryCache())
        for s in (world.settings, reference)
    ]
    try:
        yield platforms[0], platforms[1]
    finally:
        for platform in platforms:
            platform.close()


def test_campaign_export_skips_held_out_customers_and_records_both_arms(
    world: World, exporters: tuple[Platform, Platform], tmp_path: Path
) -> None:
    held, reference = exporters
    members = set(world.members())
    top = 40
    everyone = export_campaign(
        reference.services, CampaignRequest(top=top, channel="web"), str(tmp_path / "a.csv")
    )
    dry = export_campaign(
        held.services, CampaignRequest(top=top, channel="web"), str(tmp_path / "b.csv")
    )
    exported = pd.read_csv(tmp_path / "b.csv", dtype={"customer_id": str})

    assert len(exported) == top and not set(exported["customer_id"]) & members
    assert [r.customer_id for r in dry.rows] == list(exported["customer_id"])
    assert dry.held_out and {r.customer_id for r in dry.held_out} <= members
    cutoff = min(r.score for r in dry.rows)
    assert min(r.score for r in dry.held_out) >= cutoff
    # Of everyone's top N, the members are held out and the others still exported.
    best = {r.customer_id for r in everyone.rows}
    assert best & members <= {r.customer_id for r in dry.held_out}
    assert best - members <= set(exported["customer_id"])
    assert f"{len(dry.held_out)} held out" in dry.summary()
    assert dry.exposures_recorded == 0 and exposures_of(world.engine, dry.rows[0].customer_id) == []

    committed = export_campaign(
        held.services, CampaignRequest(top=top, channel="web", commit=True), str(tmp_path / "c.csv")
    )
    assert [r.customer_id for r in committed.rows] == [r.customer_id for r in dry.rows]
    assert committed.exposures_recorded == top + len(committed.held_out)
    with world.engine.connect() as conn:
        rows = {
            r.customer_id: (r.arm, r.product_ids, r.source)
            for r in conn.execute(select(Exposure.__table__)).all()
        }
    expected = {r.customer_id: ("treated", r.product_id, "campaign") for r in committed.rows}
    expected |= {r.customer_id: ("control", r.product_id, "campaign") for r in committed.held_out}
    assert rows == expected
    entered = {e.customer_id: e.entered_on for e in exposure_store.control_group_rows(world.engine)}
    assert {r.customer_id for r in committed.held_out} <= set(entered)
    assert isinstance(next(iter(entered.values())), date)
