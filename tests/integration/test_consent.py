"""Consent and contact policy through the API, the console, precompute and campaign exports.

On a private copy of the small rules world (`tests/integration/rules_world`): a customer who
had offers and then opts out of a channel gets none in it (its cached answer included),
from the API, the console, precompute and a campaign export, and no exposure is counted;
do not contact empties every answer; consent events and API changes are kept with their
time and source; quiet hours follow the customer's zone (or the region's); a customer who
objects to profiling gets segment-free popular products only. The store and the import of
consent, do-not-call and time zones run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update

from nextoffer.asgi import create_app
from nextoffer.cache.memory import MemoryCache
from nextoffer.config import Settings
from nextoffer.domain.contact import ConsentFacts, Withheld, decide
from nextoffer.domain.errors import InvalidRequestError
from nextoffer.domain.roles import Role
from nextoffer.pipelines.etl import run_ingest
from nextoffer.pipelines.precompute import run_precompute
from nextoffer.platform import Platform, build_platform
from nextoffer.registry.mlflow_registry import ModelRegistry
from nextoffer.scoring.champions import load_offer_champion
from nextoffer.scoring.contact import contact_rules
from nextoffer.serving.api_keys import create_api_key
from nextoffer.serving.offers import POPULAR_REASON, popular_lists
from nextoffer.serving.users import create_user
from nextoffer.store import consent as consent_store
from nextoffer.store import migrate
from nextoffer.store.consent import ChangeRow
from nextoffer.store.engine import make_engine
from nextoffer.store.schema import ConsentChange, Customer, PrecomputedOffers
from nextoffer.usecases.campaigns import CampaignRequest, export_campaign
from nextoffer.usecases.offers import OfferRequest, answer_offers, exposure_of
from tests.integration.rules_world import RulesWorld, rules_world

PASSWORD = "consent-viewer-password"
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Served:
    """The API and console (TestClient) and a platform for exports, on one world copy."""

    settings: Settings
    engine: Engine
    client: TestClient
    platform: Platform
    keys: dict[str, str]

    def answer(self, customer: str, **params: Any) -> dict[str, Any]:
        """The API's offers answer (asserted 200)."""
        response = self.client.get(
            f"/v1/customers/{customer}/offers", params=params, headers=self.header("viewer")
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def put_consent(self, customer: str, body: dict[str, Any]) -> dict[str, Any]:
        """PUT the customer's consent as a writer (asserted 200)."""
        response = self.client.put(
            f"/v1/customers/{customer}/consent", json=body, headers=self.header("writer")
        )
        assert response.status_code == 200, response.text
        out: dict[str, Any] = response.json()
        return out

    def header(self, role: str) -> dict[str, str]:
        """The X-API-Key header of a key with `role`."""
        return {"X-API-Key": self.keys[role]}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> RulesWorld:
    return rules_world(tmp_path_factory)


@pytest.fixture(scope="module")
def served(world: RulesWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A private copy of the world behind the API and console, exposures recorded."""
    root = world.copy(tmp_path_factory.mktemp("consent") / "world")
    settings = world.settings(root, console_secure_cookies=False)
    engine = make_engine(settings.database_url)
    cache = MemoryCache()
    keys = {
        role.value: create_api_key(engine, f"consent {role.value}", role)[1]
        for role in (Role.VIEWER, Role.WRITER)
    }
    create_user(engine, "viewer1", PASSWORD, Role.VIEWER)
    app = create_app(settings, engine=engine, cache=cache)
    platform = build_platform(settings, engine=engine, cache=cache)
    platform.services.state.refresh()  # the catalogue and champion the API serves
    try:
        with TestClient(app) as client:
            yield Served(settings, engine, client, platform, keys)
    finally:
        platform.close()
        engine.dispose()


_TAKEN: set[str] = set()
"""Customers a test has changed already: each test takes fresh ones."""


def customers_with_offers(served: Served, channel: str, n: int) -> list[str]:
    """`n` customers no test took yet whose answer in `channel` has offers."""
    with served.engine.connect() as conn:
        ids = [str(c) for c in conn.execute(select(PrecomputedOffers.customer_id)).scalars()]
    found: list[str] = []
    for customer in sorted(set(ids) - _TAKEN):
        if served.answer(customer, channel=channel)["offers"]:
            found.append(customer)
            if len(found) == n:
                _TAKEN.update(found)
                return found
    raise AssertionError(f"fewer than {n} fresh customers with offers in {channel}")


def login(client: TestClient) -> None:
    """Sign in to the console as viewer1."""
    token = _TOKEN.search(client.get("/login").text)
    assert token
    done = client.post(
        "/login",
        data={"username": "viewer1", "password": PASSWORD, "csrf_token": token[1]},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text


def test_opt_out_empties_the_channel_everywhere(
    served: Served, world: RulesWorld, tmp_path: Path
) -> None:
    customer, other = customers_with_offers(served, "web", 2)
    first = served.answer(customer, channel="web")
    cached = served.answer(customer, channel="web")
    assert cached["source"] == "cache" and cached["offers"] == first["offers"]
    assert cached["withheld_reason"] is None
    started = datetime.now(UTC) - timedelta(seconds=1)

    state = served.put_consent(customer, {"channels": {"web": False}})

    # Kept with its time and source; what it allows now.
    assert state["channels"]["web"] is False and state["closed_now"]["web"] == "no_consent"
    assert "web" not in state["open_now"] and "app" in state["open_now"]
    change = state["history"][-1]
    assert (change["channel"], change["granted"], change["source"]) == ("web", False, "api")
    assert started <= datetime.fromisoformat(change["changed_at"]) <= datetime.now(UTC)

    # The API: the cached answer is not served; nothing in the channel, and why.
    after = served.answer(customer, channel="web")
    assert after["offers"] == [] and after["source"] == "contact_policy"
    assert after["withheld_reason"] == "no_consent"
    assert served.answer(other, channel="web")["offers"]  # others keep theirs
    # No channel: only offers allowed in a channel still open (all of them, here).
    catalogue = served.platform.services.state.catalogue
    assert catalogue is not None
    for offer in served.answer(customer)["offers"]:
        channels = catalogue.channels[catalogue.index(offer["product_id"])]
        assert not channels or channels - {"web"}, offer["product_id"]
    # A withheld answer is no exposure (the API's answers record theirs through this).
    services = served.platform.services
    request = OfferRequest(customer, channel="web")
    withheld = answer_offers(services, OfferRequest(customer, channel="web", record_exposure=False))
    assert withheld.withheld_reason == "no_consent"
    assert exposure_of(services, request, withheld) is None

    # A campaign in the channel leaves the customer out and says so.
    out = tmp_path / "web.csv"
    export = export_campaign(
        served.platform.services, CampaignRequest(top=10_000, channel="web"), str(out)
    )
    exported = set(pd.read_csv(out, dtype={"customer_id": str})["customer_id"])
    assert customer not in exported and other in exported
    assert export.withheld >= 1 and "withheld by consent" in export.summary()
    with pytest.raises(InvalidRequestError, match="--channel is required"):
        export_campaign(served.platform.services, CampaignRequest(top=5), str(tmp_path / "x.csv"))

    # Do not contact: nothing anywhere; the console shows it.
    served.put_consent(customer, {"do_not_contact": True})
    for channel in (None, "app", "retail"):
        answer = served.answer(customer, **({"channel": channel} if channel else {}))
        assert answer["offers"] == [] and answer["withheld_reason"] == "do_not_contact"
    login(served.client)
    page = served.client.get(f"/customers/{customer}").text
    assert 'data-withheld-reason="do_not_contact"' in page
    assert 'class="offer"' not in page
    assert 'data-channel="web" data-granted="false" data-closed="do_not_contact"' in page
    other_page = served.client.get(f"/customers/{other}").text
    assert 'class="offer"' in other_page and "data-withheld-reason" not in other_page

    # Precompute: the do-not-contact customer's row is empty, a customer open to retail
    # only keeps offers allowed in retail.
    retail_only, objecting = customers_with_offers(served, "web", 2)
    served.put_consent(objecting, {"objects_to_profiling": True})
    served.put_consent(
        retail_only,
        {"channels": {"web": False, "app": False, "call_center": False, "telesales": False}},
    )
    registry = ModelRegistry.from_settings(served.settings)
    run_precompute(served.engine, served.settings, load_offer_champion(registry))
    with served.engine.connect() as conn:
        rows: dict[str, Any] = dict(
            conn.execute(
                select(PrecomputedOffers.customer_id, PrecomputedOffers.offers).where(
                    PrecomputedOffers.customer_id.in_([customer, retail_only, other, objecting])
                )
            ).all()
        )
    stored = {c: json.loads(o) if isinstance(o, str) else o for c, o in rows.items()}
    assert stored[customer] == [] and stored[other]
    assert objecting not in stored  # not scored at all
    for offer in stored[retail_only]:
        channels = catalogue.channels[catalogue.index(offer["product_id"])]
        assert not channels or "retail" in channels, offer["product_id"]
    assert served.answer(retail_only, channel="app")["withheld_reason"] == "no_consent"


def test_consent_events_change_consent_at_their_time(served: Served) -> None:
    (customer,) = customers_with_offers(served, "app", 1)
    when = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    event = {
        "customer_id": customer,
        "event_type": "consent_withdrawn",
        "channel": "app",
        "ts": when.isoformat(),
    }
    response = served.client.post("/v1/events", json=event, headers=served.header("writer"))
    assert response.status_code == 201, response.text
    assert response.json()["stored"] == 1
    assert served.answer(customer, channel="app")["withheld_reason"] == "no_consent"

    # An older event does not undo a newer change; a newer one does.
    older = event | {"event_type": "consent_granted", "ts": (when - timedelta(days=1)).isoformat()}
    assert served.client.post("/v1/events", json=older, headers=served.header("writer")).is_success
    assert served.answer(customer, channel="app")["offers"] == []
    newer = event | {"event_type": "consent_granted", "ts": (when + timedelta(hours=1)).isoformat()}
    assert served.client.post("/v1/events", json=newer, headers=served.header("writer")).is_success
    assert served.answer(customer, channel="app")["offers"]

    history = served.client.get(
        f"/v1/customers/{customer}/consent", headers=served.header("viewer")
    ).json()["history"]
    assert [
        (h["granted"], h["source"], h["changed_at"][:19]) for h in history if h["channel"] == "app"
    ] == [
        (True, "event", (when - timedelta(days=1)).isoformat()[:19]),
        (False, "event", when.isoformat()[:19]),
        (True, "event", (when + timedelta(hours=1)).isoformat()[:19]),
    ]
    # Viewers read consent, only writers change it; a bad channel is a 422 problem.
    denied = served.client.put(
        f"/v1/customers/{customer}/consent",
        json={"channels": {"web": False}},
        headers=served.header("viewer"),
    )
    assert denied.status_code == 403
    bad = served.client.put(
        f"/v1/customers/{customer}/consent",
        json={"channels": {"fax": False}},
        headers=served.header("writer"),
    )
    assert bad.status_code == 422
    missing = served.client.put(
        "/v1/customers/NO-SUCH-ONE/consent",
        json={"channels": {"web": False}},
        headers=served.header("writer"),
    )
    assert missing.status_code == 404


def test_objection_to_profiling_gets_segment_free_popularity_only(served: Served) -> None:
    (customer,) = customers_with_offers(served, "web", 1)
    before = served.answer(customer)
    assert before["source"] in ("cache", "precomputed", "live")

    served.put_consent(customer, {"objects_to_profiling": True})
    answer = served.answer(customer)

    assert answer["source"] == "popular" and answer["experiment"] is None
    assert answer["offers"] and answer["withheld_reason"] is None
    with served.engine.connect() as conn:
        overall = {p for p, _ in popular_lists(conn)["all"]}
    for offer in answer["offers"]:
        # Ranked by the overall popular shares (the popular fallback's arbitration): no model.
        assert POPULAR_REASON in offer["reasons"] and offer["model_version"] == "popular"
        assert offer["product_id"] in overall
    served.put_consent(customer, {"objects_to_profiling": False})
    assert served.answer(customer)["source"] != "popular"


def test_quiet_hours_follow_the_customer_zone_then_the_region(
    served: Served, world: RulesWorld
) -> None:
    customer, neighbour = customers_with_offers(served, "web", 2)
    with served.engine.begin() as conn:
        region = conn.execute(
            select(Customer.region).where(Customer.customer_id == neighbour)
        ).scalar_one()
        conn.execute(
            update(Customer).where(Customer.customer_id == customer).values(timezone="Asia/Tokyo")
        )
    # Monday 20:30 UTC: 05:30 on Tuesday in Tokyo (quiet), 20:30 in UTC (not yet).
    monday_evening = datetime(2026, 11, 23, 20, 30, tzinfo=UTC)
    settings = served.settings.model_copy(
        update={
            "quiet_hours": "web=21-8",
            "quiet_days": "telesales=sat|sun",
            "region_timezones": f"{region}=Asia/Tokyo",
        }
    )
    platform = build_platform(
        settings, engine=served.engine, cache=MemoryCache(), clock=lambda: monday_evening
    )
    try:
        services = platform.services
        services.state.refresh()
        quiet = answer_offers(
            services, OfferRequest(customer, channel="web", record_exposure=False)
        )
        assert quiet.offers == [] and quiet.withheld_reason == "quiet_hours"
        # The neighbour has no zone of their own: their region's (Tokyo) applies.
        region_quiet = answer_offers(services, OfferRequest(neighbour, channel="web"))
        assert region_quiet.withheld_reason == "quiet_hours"
        # Other channels stay open.
        app = answer_offers(services, OfferRequest(customer, channel="app"))
        assert app.withheld_reason is None and app.source != "contact_policy"
    finally:
        platform.close()
    # Without the region mapping, the default zone (UTC) is not in quiet hours yet.
    plain = build_platform(
        settings.model_copy(update={"region_timezones": ""}),
        engine=served.engine,
        cache=MemoryCache(),
        clock=lambda: monday_evening,
    )
    try:
        plain.services.state.refresh()
        assert answer_offers(plain.services, OfferRequest(neighbour, channel="web")).offers
    finally:
        plain.close()

    rules = contact_rules(settings)
    sunday = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    assert decide(ConsentFacts(), rules, sunday, "telesales").reason is Withheld.QUIET_HOURS
    assert decide(ConsentFacts(), rules, monday_evening, "telesales").reason is None
    dnc = ConsentFacts(do_not_call=True)
    assert decide(dnc, rules, monday_evening, "telesales").reason is Withheld.DO_NOT_CALL
    assert decide(dnc, rules, monday_evening, "call_center").reason is None


CUSTOMERS_CSV = """customer_id,signup_date,contract_type,payment_method,region,timezone
K1,2024-01-01,prepaid,voucher,north,Europe/Berlin
K2,2024-01-01,prepaid,voucher,north,
K3,2024-01-01,prepaid,voucher,north,not a zone!
"""
CONSENT_CSV = """customer_id,channel,granted,changed_at
K1,web,true,2026-01-01T10:00:00Z
K1,web,false,2026-03-01T10:00:00Z
K2,contact,false,2026-02-01T10:00:00Z
K2,fax,false,2026-02-01T10:00:00Z
NOBODY,web,false,2026-02-01T10:00:00Z
"""
DO_NOT_CALL_CSV = """customer_id,listed_on
K1,2026-02-02
NOBODY,2026-02-02
"""


def test_import_of_consent_do_not_call_and_zones(database_url: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "customers.csv").write_text(CUSTOMERS_CSV)
    (data / "consent.csv").write_text(CONSENT_CSV)
    (data / "do_not_call.csv").write_text(DO_NOT_CALL_CSV)
    settings = Settings(database_url=database_url, var_dir=tmp_path / "var", cache_url="memory://")
    engine = make_engine(database_url)
    try:
        migrate.upgrade(engine)
        run_ingest(engine, settings, data)
        run_ingest(engine, settings, data)  # again: nothing changes

        k1 = consent_store.facts_for(engine, "K1")
        k2 = consent_store.facts_for(engine, "K2")
        k3 = consent_store.facts_for(engine, "K3")
        assert k1 is not None and k2 is not None
        assert k1.consent == {"web": False} and k1.do_not_call and k1.timezone == "Europe/Berlin"
        assert k2.do_not_contact and not k2.do_not_call and k2.timezone is None
        assert k3 is None  # its time zone is not one: quarantined, not loaded
        history = consent_store.history(engine, "K1")
        assert [(h.granted, h.source, h.changed_at) for h in history] == [
            (True, "import", datetime(2026, 1, 1, 10, tzinfo=UTC)),
            (False, "import", datetime(2026, 3, 1, 10, tzinfo=UTC)),
        ]
        with engine.connect() as conn:
            assert len(conn.execute(select(ConsentChange.__table__)).all()) == 3

        # A change through the store (as the API makes it) is added to the history and the
        # latest counts; the same key again keeps one row with the last value.
        now = datetime(2026, 4, 1, 9, tzinfo=UTC)
        for granted in (True, True):
            with engine.begin() as conn:
                consent_store.record_changes(conn, [ChangeRow("K1", "web", granted, now, "api")])
        k1 = consent_store.facts_for(engine, "K1")
        assert k1 is not None and k1.consent == {"web": True}
        assert [h.source for h in consent_store.history(engine, "K1")] == [
            "import",
            "import",
            "api",
        ]
        rules = contact_rules(settings)
        assert decide(k1, rules, now, "telesales").reason is Withheld.DO_NOT_CALL
        assert decide(k2, rules, now).reason is Withheld.DO_NOT_CONTACT
    finally:
        engine.dispose()

    quarantined = "\n".join(p.read_text() for p in (tmp_path / "var" / "quarantine").glob("*.csv"))
    assert "not a zone!" in quarantined and "fax" in quarantined and "NOBODY" in quarantined
