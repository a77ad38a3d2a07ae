"""Every consumer of offers honours every step of `usecases.offers`, checked as a client sees it.

Issue 14: the API, the console's customer page, a precompute run and a cache rebuild all
get offers by one path, shaped by the ordered steps `STEPS` and `CHAIN_STEPS`. One scenario
per backend drives the real server: customers of the universal control group (the e2e
servers hold out a share), a running control-vs-champion experiment, products the API
offered shown up to the contact cap, then a precompute job through `POST /v1/jobs` and
(with Redis) `nextoffer cache rebuild`. Every answer a consumer gives is recorded with what
the database said at that moment; one test per (step, consumer) checks the recorded answers
against that step's rule. A step added to `usecases.offers` without a check here fails.

The rebuilt cache runs on the PostgreSQL backend only: its cache is Redis, shared with the
server, whereas the SQLite backend's memory cache lives inside the server process, where no
rebuild from outside can reach it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from nextoffer.domain.experiments import Strategy, assign
from nextoffer.store.schema import ChurnScore, ContactHistory, Product, UserFeatures
from nextoffer.usecases.offers import CHAIN_STEPS, STEPS
from tests.e2e.conftest import REDIS_DB, REDIS_HOST, REDIS_PORT, Api
from tests.e2e.server import run_cli
from tests.e2e.test_api import (
    CONTROL_VS_CHAMPION,
    catalogue,
    held,
    ids,
    new_event,
    offers,
    post_events,
    setting,
    start_experiment,
    stop_experiment,
    wait_until,
)

STEP_NAMES = [name for name, _ in STEPS] + list(CHAIN_STEPS)
"""Every step an offers answer goes through, in order, as `usecases.offers` names them."""

API, CONSOLE, PRECOMPUTED, REBUILT = "api", "console", "precomputed", "rebuilt cache"
CONSUMERS = (API, CONSOLE, PRECOMPUTED, REBUILT)
# Where each consumer's answers to customers outside the control group come from.
SOURCES = {
    API: {"precomputed", "cache"},
    CONSOLE: {"precomputed", "cache"},
    PRECOMPUTED: {"precomputed"},
    REBUILT: {"cache"},
}
# How many customers each part of the scenario needs.
CONTROL_CUSTOMERS = 3
GROUP_SIZE = 2
K = 10
JOB_TIMEOUT_S = 180

# The feature column counting a customer's held products of each category.
HELD_COLUMN = {
    "mobile_plan": "mobile_held",
    "broadband_plan": "broadband_held",
    "addon": "addons_held",
    "device": "devices_held",
    "bundle": "bundles_held",
}

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_OFFERS = re.compile(
    r'<section class="card" id="offers" data-source="([^"]*)"[^>]*data-control="(true|false)"'
)
_OFFER_ROW = re.compile(r'<tr class="offer" data-product-id="([^"]+)"')
_VARIANT = re.compile(r"experiment variant <b>([^<]+)</b>")


# --- what the consumers answered ----------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One answer a consumer gave, and the products shown up to the cap when it was read."""

    consumer: str
    customer: str
    offered: tuple[str, ...]
    source: str
    variant: str | None
    capped: frozenset[str]
    control: bool = False
    """The answer said the customer is held out (`control: true`)."""

    def describe(self) -> str:
        """The answer in a failure message."""
        return (
            f"{self.consumer} served {self.customer} {list(self.offered)} "
            f"(source {self.source}, variant {self.variant}, control {self.control})"
        )


class Console:
    """The console over plain HTTP, signed in through its login form as a new viewer.

    The e2e server sets Secure (`__Host-`) cookies, which a cookie jar keeps off plain
    http, so the session cookie travels in an explicit Cookie header.
    """

    def __init__(self, api: Api) -> None:
        self.client = httpx.Client(base_url=api.url, follow_redirects=False, timeout=30.0)
        username = f"e2e-steps-{uuid.uuid4().hex[:10]}"
        password = "offer steps console password"
        run_cli(
            api.env,
            "users",
            "create",
            username,
            "--role",
            "viewer",
            "--password-stdin",
            stdin=f"{password}\n",
        )
        form = self.client.get("/login")
        token = _CSRF.search(form.text)
        assert form.status_code == 200 and token, "the login form has no CSRF token"
        done = self.client.post(
            "/login",
            data={"username": username, "password": password, "csrf_token": token[1], "next": "/"},
            headers={"Cookie": _cookie_header(form)},
        )
        assert done.status_code == 303, done.text
        self.cookie = _cookie_header(done)
        assert "nextoffer_console=" in self.cookie, done.headers

    def page(self, customer: str) -> str:
        """The customer page's HTML (asserted 200)."""
        page = self.client.get(f"/customers/{customer}", headers={"Cookie": self.cookie})
        self.client.cookies.clear()
        assert page.status_code == 200, page.text[:500]
        return page.text

    def close(self) -> None:
        """Close the connection."""
        self.client.close()


def _cookie_header(response: httpx.Response) -> str:
    """The cookies a response set, as a Cookie request header."""
    pairs = [h.split(";", 1)[0] for h in response.headers.get_list("set-cookie")]
    return "; ".join(p for p in pairs if not p.endswith("="))


@dataclass
class Recorder:
    """Reads answers from the consumers and keeps them with the contact state of the moment."""

    api: Api
    console: Console
    cap: int
    seen: list[Seen] = field(default_factory=list)

    def capped(self, customer: str) -> frozenset[str]:
        """The products shown to `customer` at least `cap` times within the contact window."""
        since = datetime.now(UTC) - timedelta(days=setting(self.api, "contact_window_days"))
        with self.api.engine.connect() as conn:
            rows = conn.execute(
                select(ContactHistory.product_id)
                .where(
                    ContactHistory.customer_id == customer,
                    ContactHistory.contacted_at >= since,
                )
                .group_by(ContactHistory.product_id)
                .having(func.count() >= self.cap)
            ).scalars()
            return frozenset(rows)

    def from_api(self, consumer: str, customer: str) -> Seen:
        """The API's answer, recorded as `consumer`'s."""
        capped = self.capped(customer)
        body = offers(self.api, customer, k=K)
        variant = body["experiment"]["variant"] if body["experiment"] else None
        seen = Seen(
            consumer, customer, tuple(ids(body)), body["source"], variant, capped, body["control"]
        )
        self.seen.append(seen)
        return seen

    def from_console(self, customer: str) -> Seen:
        """The offers the console's customer page shows."""
        capped = self.capped(customer)
        html = self.console.page(customer)
        source = _OFFERS.search(html)
        assert source, "the customer page has no offers section"
        variant = _VARIANT.search(html)
        seen = Seen(
            CONSOLE,
            customer,
            tuple(_OFFER_ROW.findall(html)),
            source[1],
            variant[1] if variant else None,
            capped,
            source[2] == "true",
        )
        self.seen.append(seen)
        return seen

    def show_to_cap(self, customer: str, offered: Seen) -> str:
        """Impressions of the top product of an answer the product gave, up to the cap."""
        assert offered.offered, f"no offer to show: {offered.describe()}"
        product = offered.offered[0]
        since = datetime.now(UTC) - timedelta(days=setting(self.api, "contact_window_days"))
        with self.api.engine.connect() as conn:
            already = conn.execute(
                select(func.count()).where(
                    ContactHistory.customer_id == customer,
                    ContactHistory.product_id == product,
                    ContactHistory.contacted_at >= since,
                )
            ).scalar_one()
        assert already < self.cap, f"{offered.describe()}: {product} was shown {already} times"
        shown = [new_event(customer, product) for _ in range(self.cap - already)]
        assert post_events(self.api, shown)["stored"] == len(shown)
        return product


# --- the scenario -------------------------------------------------------------------------


@dataclass
class Scenario:
    """What one backend's consumers answered while every step had something to do."""

    api: Api
    control: list[str]
    """Customers the experiment assigns to its control variant."""
    held_out: list[str]
    """Customers of the universal control group."""
    capped: dict[str, str]
    """Customer → a product the API offered them, then shown to them up to the cap."""
    seen: list[Seen]
    consumers: tuple[str, ...]
    opted_out: list[str] = field(default_factory=list)
    """Customers who had offers, then asked not to be contacted (`PUT .../consent`)."""

    def of(self, consumer: str) -> list[Seen]:
        """The answers `consumer` gave."""
        return [s for s in self.seen if s.consumer == consumer]

    @cached_property
    def rules(self) -> Eligibility:
        """The eligibility facts of the scenario's customers, from the database."""
        return Eligibility.read(self.api, sorted({s.customer for s in self.seen}))


def run_precompute(api: Api) -> None:
    """A precompute job started through the API, waited for; asserted to succeed."""
    response = api.post("/v1/jobs", {"kind": "precompute"}, role="operator")
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    status: dict[str, Any] = {}

    def finished() -> bool:
        nonlocal status
        polled = api.get(f"/v1/jobs/{job_id}", role="operator")
        assert polled.status_code == 200, polled.text
        status = polled.json()
        return bool(status["status"] != "running")

    wait_until(finished, JOB_TIMEOUT_S, f"precompute job {job_id}")
    assert status["status"] == "succeeded", status


def rebuild_cache(api: Api) -> None:
    """Empty Redis, then refill it with `nextoffer cache rebuild` (the cache_rebuild job)."""
    import redis

    cache = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
    try:
        cache.flushdb()
        out = run_cli(api.env, "cache", "rebuild")
        assert "offer answers" in out, out
        assert any(True for _ in cache.scan_iter("offers:*", count=1000)), "nothing rebuilt"
    finally:
        cache.close()


@dataclass
class Pool:
    """Customers no other test has taken, sorted by their variant in the experiment."""

    api: Api
    experiment_id: str
    waiting: dict[bool, list[str]] = field(default_factory=lambda: {True: [], False: []})

    def take(self, *, control: bool) -> str:
        """A fresh customer the experiment assigns to control (or not)."""
        while not self.waiting[control]:
            [customer] = self.api.take(1)
            variant = assign(self.experiment_id, customer, CONTROL_VS_CHAMPION)
            self.waiting[variant.strategy is Strategy.CONTROL].append(customer)
        return self.waiting[control].pop(0)


def offered_to(record: Recorder, pool: Pool, consumer: str) -> tuple[str, Seen]:
    """A fresh customer outside the control group, and `consumer`'s first answer with offers."""
    while True:
        customer = pool.take(control=False)
        first = record.from_api(consumer, customer)
        if first.offered:
            return customer, first


def play(api: Api) -> Scenario:
    """Drive every consumer through every step on `api`; the answers they gave."""
    cap = setting(api, "contact_cap")
    redis_cache = api.env["NEXTOFFER_CACHE_URL"].startswith("redis://")
    consumers = CONSUMERS if redis_cache else tuple(c for c in CONSUMERS if c != REBUILT)
    console = Console(api)
    experiment_id = start_experiment(api, "e2e offer steps", "customer")
    try:
        record = Recorder(api, console, cap)
        pool = Pool(api, experiment_id)
        control = [pool.take(control=True) for _ in range(CONTROL_CUSTOMERS)]
        held_out = api.take(CONTROL_CUSTOMERS, control_group=True)
        capped: dict[str, str] = {}

        # The world's own precomputed answers, through the API and the console; the top
        # offer of some is shown up to the cap, and read again.
        for customer in control + held_out:
            record.from_api(API, customer)
            record.from_api(API, customer)
            record.from_console(customer)
        early = []
        for _ in range(GROUP_SIZE):
            customer, first = offered_to(record, pool, API)
            capped[customer] = record.show_to_cap(customer, first)
            record.from_api(API, customer)
            record.from_api(API, customer)
            record.from_console(customer)
            early.append(customer)
        # Had offers, then asked not to be contacted: read only after the change.
        opted_out = []
        for _ in range(GROUP_SIZE):
            customer, first = offered_to(record, pool, API)
            record.seen.remove(first)  # read before the change
            done = api.client.put(
                f"/v1/customers/{customer}/consent",
                json={"do_not_contact": True},
                headers=api.headers("writer"),
            )
            assert done.status_code == 200, done.text
            record.from_api(API, customer)
            record.from_console(customer)
            opted_out.append(customer)
        # Capped now, read only after the precompute job: the impressions drop the cached
        # answer, so their next answer is the new precompute's row.
        late = []
        for _ in range(GROUP_SIZE):
            customer, first = offered_to(record, pool, API)
            capped[customer] = record.show_to_cap(customer, first)
            late.append(customer)

        run_precompute(api)
        for customer in control + held_out + late + opted_out:
            record.from_api(PRECOMPUTED, customer)
            record.from_console(customer)
        # Read first after the job, then capped: their precomputed rows hold the product.
        after = []
        for _ in range(GROUP_SIZE):
            customer, first = offered_to(record, pool, PRECOMPUTED)
            capped[customer] = record.show_to_cap(customer, first)
            record.from_api(PRECOMPUTED, customer)
            record.from_console(customer)
            after.append(customer)

        if REBUILT in consumers:
            rebuild_cache(api)
            for customer in control + held_out + early + late + after + opted_out:
                record.from_api(REBUILT, customer)
                record.from_console(customer)
        return Scenario(api, control, held_out, capped, record.seen, consumers, opted_out)
    finally:
        stop_experiment(api, experiment_id)
        console.close()


BACKEND_MARKS = {"sqlite": (), "postgres": (pytest.mark.integration,)}
"""Each backend's server: SQLite with its in-process cache, PostgreSQL with Redis."""


def consumers_of(backend: str) -> tuple[str, ...]:
    """The consumers a backend's server has: a rebuilt cache needs a shared one (Redis)."""
    return CONSUMERS if backend == "postgres" else tuple(c for c in CONSUMERS if c != REBUILT)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every (backend, consumer) pair that exists, and no other: nothing to skip."""
    if "consumer" not in metafunc.fixturenames:
        return
    pairs = [
        pytest.param(backend, consumer, id=f"{backend}-{_slug(consumer)}", marks=marks)
        for backend, marks in BACKEND_MARKS.items()
        for consumer in consumers_of(backend)
    ]
    metafunc.parametrize(("scenario", "consumer"), pairs, indirect=["scenario"], scope="module")


@pytest.fixture(scope="module")
def scenario(request: pytest.FixtureRequest) -> Iterator[Scenario]:
    """The scenario played once on each backend's server (the experiment stopped after it)."""
    api: Api = request.getfixturevalue(f"{request.param}_api")
    yield play(api)


# --- the rules ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Eligibility:
    """What decides whether a customer may get a product: the catalogue, holdings, features."""

    products: dict[str, Product]
    features: dict[str, Any]
    holdings: dict[str, set[str]]
    risk: dict[str, float]
    at_risk: float

    @classmethod
    def read(cls, api: Api, customers: list[str]) -> Eligibility:
        """The facts for `customers`, read from the server's database."""
        with api.engine.connect() as conn:
            features = {
                row.customer_id: row
                for row in conn.execute(
                    select(UserFeatures).where(UserFeatures.customer_id.in_(customers))
                )
            }
            risk: dict[str, float] = {}
            for customer, score in conn.execute(
                select(ChurnScore.customer_id, ChurnScore.score)
                .where(ChurnScore.customer_id.in_(customers))
                .order_by(ChurnScore.scored_at)
            ):
                risk[customer] = score  # the latest score wins
        return cls(
            products=catalogue(api),
            features=features,
            holdings={c: held(api, c) for c in customers},
            risk=risk,
            at_risk=setting(api, "churn_bands")[1],
        )

    def broken(self, customer: str, product_id: str) -> list[str]:
        """The rules that forbid offering `product_id` to `customer` (none: it may be offered)."""
        product = self.products.get(product_id)
        if product is None:
            return ["not in the catalogue"]
        features = self.features.get(customer)
        if features is None:
            return ["the customer has no features to check the rules against"]
        holdings = self.holdings[customer]
        why = []
        if not product.active:
            why.append("inactive")
        if product_id in holdings:
            why.append("already held")
        contracts = _listed(product.contract_types)
        if contracts and features.contract_type not in contracts:
            why.append(f"contract {features.contract_type!r} not in {sorted(contracts)}")
        regions = _listed(product.regions)
        if regions and features.region not in regions:
            why.append(f"region {features.region!r} not in {sorted(regions)}")
        if features.tenure_months < product.min_tenure_months:
            why.append(f"tenure {features.tenure_months} < {product.min_tenure_months} months")
        required = product.requires_category
        if required:
            categories = {self.products[p].category for p in holdings if p in self.products}
            categories |= {c for c, col in HELD_COLUMN.items() if getattr(features, col) or 0}
            if required not in categories:
                why.append(f"requires a held {required}, holds {sorted(categories)}")
        risk = self.risk.get(customer)
        if product.is_retention_offer and not (risk is not None and risk >= self.at_risk):
            why.append(f"retention offer, churn risk {risk} below {self.at_risk}")
        return why


def _listed(value: str | None) -> set[str]:
    """An eligibility list of the products table: |-separated, empty means any."""
    return {v.strip() for v in (value or "").split("|") if v.strip()}


Check = Callable[[Scenario, list[Seen]], list[str]]


def consent_and_contact_policy(scenario: Scenario, seen: list[Seen]) -> list[str]:
    """Customers who asked not to be contacted get nothing, from any source, and it says so."""
    problems = [
        f"{answer.describe()}: asked not to be contacted"
        for answer in seen
        if answer.customer in scenario.opted_out
        and (answer.offered or answer.source != "contact_policy")
    ]
    if not any(a.customer in scenario.opted_out for a in seen):
        problems.append("no answer to a customer who asked not to be contacted was read")
    return problems


def universal_control_group(scenario: Scenario, seen: list[Seen]) -> list[str]:
    """Held-out customers get nothing and `control: true`, from any source, in no experiment."""
    problems = []
    for answer in (a for a in seen if a.customer in scenario.held_out):
        if answer.offered or answer.source != "control" or not answer.control:
            problems.append(f"{answer.describe()}: a held-out customer gets no offer")
        if answer.variant is not None:
            problems.append(f"{answer.describe()}: a held-out customer is in no experiment")
    if not any(a.customer in scenario.held_out for a in seen):
        problems.append("no answer to a customer of the control group was read")
    return problems


def experiment_assignment(scenario: Scenario, seen: list[Seen]) -> list[str]:
    """Control customers get nothing, from any source; everyone keeps their variant."""
    problems = []
    for answer in (a for a in seen if a.customer not in scenario.held_out):
        expected = "control" if answer.customer in scenario.control else "treatment"
        if answer.variant != expected:
            problems.append(f"{answer.describe()}: assigned {expected}")
        if answer.control != (expected == "control"):
            problems.append(f"{answer.describe()}: control should be {expected == 'control'}")
        if expected == "control" and (answer.offered or answer.source != "control"):
            problems.append(f"{answer.describe()}: a control customer gets no offer")
    if not any(a.customer in scenario.control for a in seen):
        problems.append("no answer to a control customer was read")
    return problems


def eligibility_and_product_rules(scenario: Scenario, seen: list[Seen]) -> list[str]:
    """Every product offered is one the customer may get."""
    problems = [
        f"{answer.describe()}: {product} {'; '.join(why)}"
        for answer in seen
        for product in answer.offered
        if (why := scenario.rules.broken(answer.customer, product))
    ]
    if not any(a.offered for a in seen):
        problems.append("no answer offered anything")
    return problems


def contact_caps(scenario: Scenario, seen: list[Seen]) -> list[str]:
    """No product shown up to the cap within the window is offered again."""
    problems = [
        f"{answer.describe()}: {sorted(set(answer.offered) & answer.capped)} shown "
        "up to the contact cap"
        for answer in seen
        if set(answer.offered) & answer.capped
    ]
    if not any(scenario.capped.get(a.customer) in a.capped for a in seen):
        problems.append("no answer was read after a product it offered reached the cap")
    return problems


CHECKS: dict[str, Check] = {
    "consent and contact policy": consent_and_contact_policy,
    "universal control group": universal_control_group,
    "experiment assignment": experiment_assignment,
    "eligibility and product rules": eligibility_and_product_rules,
    "contact caps": contact_caps,
}


# --- the tests ----------------------------------------------------------------------------


def test_every_step_has_a_check() -> None:
    assert list(CHECKS) == STEP_NAMES, (
        "a step of usecases.offers has no check here (or the reverse)"
    )


def _slug(name: str) -> str:
    return name.replace(" ", "-")


@pytest.mark.parametrize("step", STEP_NAMES, ids=_slug)
def test_consumer_honours_step(scenario: Scenario, step: str, consumer: str) -> None:
    assert consumer in scenario.consumers, f"{consumer} did not play on this server"
    check = CHECKS.get(step)
    if check is None:
        pytest.fail(f"no check for the offer step {step!r}")
    seen = scenario.of(consumer)
    assert seen, f"{consumer} gave no answer"
    problems = check(scenario, seen)
    assert not problems, f"{consumer} does not honour {step!r}:\n" + "\n".join(problems)


def test_consumer_answers_from_its_own_source(scenario: Scenario, consumer: str) -> None:
    assert consumer in scenario.consumers, f"{consumer} did not play on this server"
    wrong = [
        s.describe()
        for s in scenario.of(consumer)
        if s.customer not in scenario.control + scenario.held_out + scenario.opted_out
        and s.source not in SOURCES[consumer]
    ]
    assert not wrong, f"{consumer} should answer from {sorted(SOURCES[consumer])}:\n" + "\n".join(
        wrong
    )
