"""The operator console in headless Chromium against the real server: what people see and do."""

from __future__ import annotations

import csv
import io
import re
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from nextoffer.config import Settings
from nextoffer.store.schema import (
    Customer,
    Event,
    Experiment,
    Exposure,
    ImpactResult,
    QuarantinedRow,
    Subscription,
    Transaction,
)
from tests.browser.conftest import ConsoleWorld, login
from tests.experiment_by_hand import by_hand


def offers_on_page(page: Any) -> list[dict[str, Any]]:
    """The offers table of a customer page, with the exact numbers behind the rounding."""
    rows = page.locator("#offers tr.offer")
    return [
        {
            "product_id": rows.nth(i).get_attribute("data-product-id"),
            "score": float(rows.nth(i).get_attribute("data-score")),
            "propensity": float(rows.nth(i).get_attribute("data-propensity")),
            "expected_value": float(rows.nth(i).get_attribute("data-expected-value")),
        }
        for i in range(rows.count())
    ]


def offers_from_api(world: ConsoleWorld, customer_id: str) -> list[dict[str, Any]]:
    """GET /v1/customers/{id}/offers with a viewer key, the fields the page shows."""
    with world.api("viewer") as api:
        answer = api.get(f"/v1/customers/{customer_id}/offers")
    assert answer.status_code == 200, answer.text
    return [
        {k: o[k] for k in ("product_id", "score", "propensity", "expected_value")}
        for o in answer.json()["offers"]
    ]


def accepts_of(world: ConsoleWorld, customer_id: str, product_id: str) -> int:
    """Accept events stored for this customer and product."""
    with world.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(Event)
                .where(
                    Event.customer_id == customer_id,
                    Event.product_id == product_id,
                    Event.event_type == "offer_accept",
                )
            ).scalar_one()
        )


def test_login_then_logout(page: Any, world: ConsoleWorld) -> None:
    page.goto("/")
    assert re.search(r"/login\?next=/$", page.url)
    page.fill("input[name=username]", "viewer1")
    page.fill("input[name=password]", "not the password at all")
    page.click("form[action='/login'] button[type=submit]")
    assert "Wrong username or password" in page.inner_text(".login")
    assert page.url.endswith("/login")

    login(page, "viewer")
    assert page.inner_text("header .user") == "viewer1 · viewer"
    assert page.inner_text("h1") == "Overview"

    page.click("header button:has-text('Log out')")
    page.wait_for_url(re.compile(r"/login$"))
    page.goto("/customers")
    assert re.search(r"/login\?next=/customers$", page.url)


def test_customer_found_by_id_and_by_name_shows_the_api_offers(
    page: Any, world: ConsoleWorld
) -> None:
    customer_id, other_id = world.take(2)
    login(page, "viewer", "/customers")

    page.fill("input[name=q]", customer_id)
    page.click("form[role=search] button")
    page.wait_for_url(f"**/customers/{customer_id}")
    shown = offers_on_page(page)
    assert shown, "the customer page shows no offers"
    # Product ids, their order and the exact scores: what the API answers, nothing else.
    assert shown == offers_from_api(world, customer_id)
    assert page.locator("#offers button:has-text('Accept')").count() == 0  # a viewer

    with world.engine.connect() as conn:
        name = conn.execute(
            select(Customer.display_name).where(Customer.customer_id == other_id)
        ).scalar_one()
    first, _, rest = name.partition(" ")
    typed = f"{first} {rest[:2]}".lower()  # lower case: the search ignores case
    page.goto("/customers")
    page.fill("input[name=q]", typed)
    page.click("form[role=search] button")
    page.wait_for_selector("#results")
    with world.engine.connect() as conn:
        expected = conn.execute(
            select(func.count())
            .select_from(Customer)
            .where(func.lower(Customer.display_name).like(typed + "%"))
        ).scalar_one()
    listed = page.locator("#results tbody tr")
    assert listed.count() == min(expected, 25)
    page.click(f"#results a[href='/customers/{other_id}']")
    page.wait_for_url(f"**/customers/{other_id}")
    assert page.inner_text("h1").startswith(name)
    assert offers_on_page(page) == offers_from_api(world, other_id)


def test_accept_moves_the_acceptance_rate_at_once(page: Any, world: ConsoleWorld) -> None:
    (customer_id,) = world.take(1)
    login(page, "writer", f"/customers/{customer_id}")
    offer = offers_on_page(page)[0]["product_id"]
    # The offer was shown (an impression through the API), so the window has one at least
    # whatever the date the generated world ends on.
    with world.api("writer") as api:
        shown = api.post(
            "/v1/events",
            json={
                "customer_id": customer_id,
                "event_type": "offer_impression",
                "product_id": offer,
            },
        )
    assert shown.status_code == 201, shown.text
    page.goto("/")
    before = page.locator("#acceptance")
    accepts_before = int(before.get_attribute("data-accepts"))
    since_before = datetime.fromisoformat(before.get_attribute("data-since"))
    assert int(before.get_attribute("data-impressions")) > 0

    page.goto(f"/customers/{customer_id}")
    accepted_before = accepts_of(world, customer_id, offer)
    page.click(f"#offers tr[data-product-id='{offer}'] button:has-text('Accept')")
    page.wait_for_selector(".flash.ok")
    assert f"Accept of {offer} recorded" in page.inner_text(".flash")
    assert accepts_of(world, customer_id, offer) == accepted_before + 1
    # The accepted product is not offered again: the answer chain saw the accept.
    assert offer not in [o["product_id"] for o in offers_on_page(page)]

    page.goto("/")
    after = page.locator("#acceptance")
    since = datetime.fromisoformat(after.get_attribute("data-since"))
    counts = offer_counts(world, since)
    assert int(after.get_attribute("data-accepts")) == counts["offer_accept"]
    assert int(after.get_attribute("data-impressions")) == counts["offer_impression"]
    expected = counts["offer_accept"] / counts["offer_impression"]
    assert page.inner_text("#acceptance-rate") == f"{expected * 100:.2f} %"
    # One more accept than before, less any old one the 30-day window let go of meanwhile.
    left = offer_counts(world, since_before)["offer_accept"] - counts["offer_accept"]
    assert counts["offer_accept"] == accepts_before + 1 - left


def offer_counts(world: ConsoleWorld, since: datetime) -> dict[str, int]:
    """Accepts and impressions stored since `since`, straight from the events table."""
    with world.engine.connect() as conn:
        found = dict(
            conn.execute(
                select(Event.event_type, func.count())
                .where(
                    Event.event_type.in_(["offer_accept", "offer_impression"]),
                    Event.ts >= since,
                )
                .group_by(Event.event_type)
            ).all()
        )
    return {kind: int(found.get(kind, 0)) for kind in ("offer_accept", "offer_impression")}


def wait_for_exposures(world: ConsoleWorld, experiment_id: str, expected: int) -> None:
    """Wait until the server has written the experiment's exposures (it writes in batches)."""
    deadline = time.monotonic() + 30
    while True:
        with world.engine.connect() as conn:
            stored = conn.execute(
                select(func.count())
                .select_from(Exposure)
                .where(Exposure.experiment_id == experiment_id)
            ).scalar_one()
        if stored >= expected or time.monotonic() > deadline:
            assert stored == expected
            return
        time.sleep(0.2)


def test_experiment_created_in_the_console_shows_results(page: Any, world: ConsoleWorld) -> None:
    login(page, "operator", "/experiments")
    name = f"console test {uuid.uuid4().hex[:6]}"
    page.fill("#new-experiment input[name=name]", name)
    page.click("#new-experiment button[type=submit]")
    page.wait_for_url(re.compile(r"/experiments/[0-9a-f-]{36}$"))
    experiment_id = page.url.rsplit("/", 1)[-1]
    assert page.inner_text("#experiment-status") == "running"

    # Customers served through the API: the server records each one's exposure with its
    # variant. Responses are posted only for what each was shown, untagged (the server tags).
    shown: dict[str, tuple[str, list[str]]] = {}
    with world.api("viewer") as api:
        for customer in world.take(24):
            answer = api.get(f"/v1/customers/{customer}/offers", params={"k": 3}).json()
            assert answer["experiment"]["experiment_id"] == experiment_id
            if answer["offers"]:
                products = [o["product_id"] for o in answer["offers"]]
                shown[customer] = (answer["experiment"]["variant"], products)
    events = []
    for i, (customer, (_variant, products)) in enumerate(shown.items()):
        kinds = [("offer_impression", p) for p in products]
        kinds += [("offer_click", products[0])] if i % 2 == 0 else []
        kinds += [("offer_accept", products[0])] if i % 3 == 0 else []
        events += [
            {"customer_id": customer, "event_type": kind, "product_id": product}
            for kind, product in kinds
        ]
    with world.api("writer") as api:
        stored = api.post("/v1/events", json={"events": events})
    assert stored.status_code == 201, stored.text
    wait_for_exposures(world, experiment_id, len(shown))
    window = Settings.model_fields["impact_window_days"].default
    hand = by_hand(world.engine, experiment_id, window)
    assert sorted(hand.variant) == sorted(shown)

    page.reload()
    for variant in {v for v, _ in shown.values()}:
        row = page.locator(f"#units tr[data-variant='{variant}']")
        assert int(row.get_attribute("data-units")) == hand.units(variant)
        assert int(row.get_attribute("data-converted")) == hand.total(hand.converted, variant)
        assert int(row.get_attribute("data-impressions")) == hand.total(hand.impressions, variant)
        assert int(row.get_attribute("data-clicks")) == hand.total(hand.clicks, variant)
    with world.api("viewer") as api:
        results = api.get(f"/v1/experiments/{experiment_id}/results").json()
    for result in results["variants"]:
        row = page.locator(f"#units tr[data-variant='{result['variant']}']")
        assert row.locator(".verdict").inner_text() == result["verdict"]
        assert int(row.get_attribute("data-units")) == result["units"]
    ratio = results["sample_ratio"]
    assert page.inner_text("#srm-verdict") == ratio["verdict"]
    assert page.get_attribute("#srm", "data-flagged") == ("yes" if ratio["flagged"] else "no")
    tested = [m for v in results["variants"] for m in v["metrics"]]
    assert page.locator("#metrics tr[data-metric]").count() == len(tested)
    # Too few customers for any test: every metric says so, and nothing counts down.
    assert all(not m["enough_data"] for m in tested)
    waiting = page.locator("#metrics td[colspan]:has-text('not enough data yet')")
    assert waiting.count() == len(tested)
    assert "valid" in page.inner_text("#always-valid")

    page.click("button:has-text('Stop experiment')")
    page.wait_for_selector(".flash.ok")
    assert page.inner_text("#experiment-status") == "stopped"
    with world.engine.connect() as conn:
        status = conn.execute(
            select(Experiment.status).where(Experiment.experiment_id == experiment_id)
        ).scalar_one()
    assert status == "stopped"


def champions(world: ConsoleWorld) -> dict[str, int | None]:
    """The champion versions, as the API's operator listing says."""
    with world.api("operator") as api:
        answer = api.get("/v1/models")
    assert answer.status_code == 200, answer.text
    found: dict[str, int | None] = answer.json()["champions"]
    return found


def test_promote_as_admin_and_be_refused_as_viewer(
    page: Any, browser: Any, world: ConsoleWorld
) -> None:
    assert champions(world)["churn"] == 1
    login(page, "viewer", "/models")
    assert page.locator("#kind-churn tr[data-version='2']").count() == 1
    assert page.locator("form.promote").count() == 0
    assert page.locator("form.rollback").count() == 0
    # The form the button would send, with the viewer's own valid CSRF token: refused.
    token = page.locator("header form input[name=csrf_token]").get_attribute("value")
    refused = page.request.post(
        "/models/churn/promote",
        form={"csrf_token": token, "version": "2", "reason": "should not happen"},
        max_redirects=0,
    )
    assert refused.status == 403
    assert "needs the admin role" in refused.text()
    assert champions(world)["churn"] == 1

    admin = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=world.url)
    try:
        admin_page = admin.new_page()
        admin_page.on("dialog", lambda dialog: dialog.accept())
        login(admin_page, "admin", "/models")
        row = admin_page.locator("#kind-churn tr[data-version='2']")
        row.locator("input[name=reason]").fill("browser test")
        row.locator("button:has-text('Promote')").click()
        admin_page.wait_for_selector(".flash")
        assert "promoted by hand: browser test" in admin_page.inner_text(".flash")
        assert champions(world)["churn"] == 2
        assert (
            admin_page.locator("#kind-churn tr[data-champion='true']").get_attribute("data-version")
            == "2"
        )
        # And back, so the rest of the session serves the model it started with.
        admin_page.click("#kind-churn form.rollback button")
        admin_page.wait_for_selector(".flash")
        assert "rolled back from v2 to v1" in admin_page.inner_text(".flash")
        assert champions(world)["churn"] == 1
    finally:
        admin.close()


def test_quarantine_csv_matches_the_quarantine_table(page: Any, world: ConsoleWorld) -> None:
    login(page, "viewer", "/data")
    with page.expect_download() as info:
        page.click("#quarantine-csv")
    download = info.value
    text = download.path().read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    with world.engine.connect() as conn:
        stored = conn.execute(
            select(QuarantinedRow.entity, QuarantinedRow.line, QuarantinedRow.reason)
        ).all()
    assert len(stored) >= 30, "the bad-row corpus was not ingested"
    assert sorted((r["entity"], int(r["line"]), r["reason"]) for r in rows) == sorted(
        (e, int(line), reason) for e, line, reason in stored
    )
    by_place = {(r["entity"], int(r["line"])): r for r in rows}
    # Two rows of the corpus, by their documented line numbers (tests/fixtures/bad_rows).
    assert by_place[("products", 4)]["reason"].startswith("negative_amount: price '-5'")
    assert by_place[("customers", 12)]["reason"].startswith("malformed_row")


def test_overview_shows_open_alerts_from_alertmanager(page: Any, world: ConsoleWorld) -> None:
    login(page, "viewer")
    alerts = page.locator("#alerts")
    assert alerts.get_attribute("data-state") == "ok"
    text = alerts.inner_text()
    assert "NextofferHighErrorRate" in text
    assert "NextofferBackupStale" in text
    assert "NextofferSilencedThing" not in text  # silenced is not open
    assert "2 open" in text
    assert any(p.startswith("/api/v2/alerts?active=true") for p in world.alertmanager.paths)
    # No backup job has run in this world: the overview says so.
    backup = page.locator("tr[data-job='backup']")
    assert "never" in backup.inner_text()


def test_a_form_without_its_csrf_token_is_refused(page: Any, world: ConsoleWorld) -> None:
    (customer_id,) = world.take(1)
    login(page, "writer", f"/customers/{customer_id}")
    offer = offers_on_page(page)[0]["product_id"]
    form = page.locator(f"#offers tr[data-product-id='{offer}'] form")
    form.locator("input[name=csrf_token]").evaluate("input => input.remove()")
    before = accepts_of(world, customer_id, offer)
    form.locator("button:has-text('Accept')").click()
    page.wait_for_selector(".error-page")
    assert "security token" in page.inner_text(".error-page")
    assert accepts_of(world, customer_id, offer) == before


def impact_by_hand(world: ConsoleWorld) -> dict[str, tuple[int, int]]:
    """{arm: (customers, acquirers)} of the stored impact run, recounted from the raw tables.

    Each customer's first untagged exposure in the run's period; acquired = a transaction
    (activation, purchase, upgrade) of an offered product after it, or a subscription to one
    starting from the next day, within the run's window (docs/impact.md).
    """
    with world.engine.connect() as conn:
        stored = conn.execute(
            select(ImpactResult.report).order_by(ImpactResult.computed_at.desc()).limit(1)
        ).scalar_one()
        exposures = conn.execute(
            select(Exposure.customer_id, Exposure.exposed_at, Exposure.arm, Exposure.product_ids)
            .where(Exposure.experiment_id.is_(None))
            .order_by(Exposure.exposed_at, Exposure.exposure_id)
        ).all()
        bought = conn.execute(
            select(Transaction.customer_id, Transaction.product_id, Transaction.ts).where(
                Transaction.type.in_(("activation", "purchase", "upgrade"))
            )
        ).all()
        subscribed = conn.execute(
            select(Subscription.customer_id, Subscription.product_id, Subscription.start_date)
        ).all()
    start = datetime.fromisoformat(stored["exposed_from"])
    end = datetime.fromisoformat(stored["exposed_to"])
    window = timedelta(days=stored["window_days"])
    first: dict[str, tuple[datetime, str, set[str]]] = {}
    for customer, at, arm, products in exposures:
        if start <= at <= end and customer not in first:
            first[customer] = (at, arm, set(products.split("|")))
    acquirers: set[str] = set()
    for customer, product, ts in bought:
        if customer in first:
            at, _arm, offered = first[customer]
            if product in offered and at < ts <= at + window:
                acquirers.add(customer)
    for customer, product, day in subscribed:
        if customer in first:
            at, _arm, offered = first[customer]
            if product in offered and at.date() < day <= (at + window).date():
                acquirers.add(customer)
    counts: dict[str, tuple[int, int]] = {}
    for arm in ("treated", "control"):
        members = [c for c, (_at, a, _p) in first.items() if a == arm]
        counts[arm] = (len(members), sum(c in acquirers for c in members))
    return counts


def test_impact_page_shows_the_database_numbers(page: Any, world: ConsoleWorld) -> None:
    # The quickstart that built the world ran the impact job on its planted campaign.
    counts = impact_by_hand(world)
    (treated, treated_bought), (control, control_bought) = counts["treated"], counts["control"]
    assert treated > 0 and control > 0
    login(page, "viewer", "/impact")
    assert int(page.inner_text("#impact-treated").replace(",", "")) == treated
    assert int(page.inner_text("#impact-control").replace(",", "")) == control
    row = page.locator("#impact-overall tr[data-metric='acquisition_rate']")
    expected = treated_bought / treated - control_bought / control
    assert float(row.get_attribute("data-estimate")) == pytest.approx(expected, abs=1e-12)
    low, high = float(row.get_attribute("data-ci-low")), float(row.get_attribute("data-ci-high"))
    assert low < expected < high
    with world.api("viewer") as api:
        stored = api.get("/v1/impact").json()
    assert stored["overall"]["treated"]["customers"] == treated
    assert stored["overall"]["acquisition"]["ci_low"] == pytest.approx(low, abs=1e-12)
    assert row.locator(".verdict").inner_text() == stored["overall"]["acquisition"]["verdict"]
