"""The audit trail: who read whose data and who changed what, append-only, ids only as digests.

On SQLite and PostgreSQL (one world each, every test on its own customers), in process: a
viewer's console look at a customer 360 and an API key's churn-risk read each appear, with
the actor, the client address and the request id, in `nextoffer audit --customer ID`, and
the access log names the caller. Experiment starts and stops, consent changes (PUT and a
consent event) and an erasure through the API, and a key created on the command line
appear as changes; the admin's console page lists the trail and a viewer cannot open it.
Through the app's own engine UPDATE and DELETE (and TRUNCATE on PostgreSQL) are refused.
Erasing a customer on the command line keeps their entries, and no column of the table
holds a raw id or the name. Entries spooled while the database is down are written once.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select, text, update
from typer.testing import CliRunner

from nextoffer.api.audit import action_of
from nextoffer.asgi import create_app
from nextoffer.cache.memory import MemoryCache
from nextoffer.cli import app as cli
from nextoffer.config import Settings
from nextoffer.domain.audit import Action, Actor, AuditEntry
from nextoffer.domain.privacy import customer_digest
from nextoffer.domain.roles import Role
from nextoffer.platform import Platform
from nextoffer.serving.api_keys import create_api_key
from nextoffer.serving.audit import AuditTrail
from nextoffer.serving.tokens import resolve_privacy_key
from nextoffer.serving.users import create_user
from nextoffer.store import DatabaseError
from nextoffer.store.engine import make_engine
from nextoffer.store.migrate import upgrade
from nextoffer.store.schema import AuditRecord, ChurnScore, Customer
from tests.conftest import fresh_postgres_database
from tests.integration.experiment_world import add_customers, add_products

READ = "C-AUDIT-0001"
"""Read through the console and the API."""
NEXT = "C-AUDIT-0002"
"""Read once, by another route: never in READ's trail."""
CONSENTING = "C-AUDIT-0003"
"""Changes consent, then is erased, through the API."""
VICTIM = "C-AUDIT-0004"
"""Read, then erased on the command line."""
VICTIM_NAME = "Zebulon Quillfeather-Audit"
CUSTOMERS = (READ, NEXT, CONSENTING, VICTIM)
PASSWORD = "audit-trail-password-1"
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class World:
    """One app on a small database: its client, keys (with their ids) and settings."""

    settings: Settings
    engine: Engine
    app: FastAPI
    client: TestClient
    keys: dict[str, tuple[str, str]]
    """By role: (key id, key)."""

    @property
    def platform(self) -> Platform:
        """The platform the app serves with."""
        platform: Platform = self.app.state.platform
        return platform

    def header(self, role: str) -> dict[str, str]:
        """The X-API-Key header of the key with `role`."""
        return {"X-API-Key": self.keys[role][1]}

    def log_in(self, username: str) -> None:
        """Sign the client in to the console (as nobody else any more)."""
        self.client.cookies.clear()
        token = _TOKEN.search(self.client.get("/login").text)
        assert token
        done = self.client.post(
            "/login",
            data={"username": username, "password": PASSWORD, "csrf_token": token[1]},
            follow_redirects=False,
        )
        assert done.status_code == 303, done.text

    def flush(self) -> None:
        """Write the queued entries now (the background flusher would, within seconds)."""
        self.platform.audit.flush()


def env_of(settings: Settings) -> dict[str, str]:
    """The environment a `nextoffer` command needs to open this world."""
    return {
        "NEXTOFFER_DATABASE_URL": settings.database_url,
        "NEXTOFFER_VAR_DIR": str(settings.var_dir),
        "NEXTOFFER_REGISTRY_URI": settings.registry_uri,
        "NEXTOFFER_ARTIFACTS_URL": settings.artifacts_url,
        "NEXTOFFER_CACHE_URL": "memory://",
        "NEXTOFFER_DB_WAIT_TIMEOUT_S": "5",
        "NEXTOFFER_LOG_JSON": "false",
    }


def nextoffer(world: World, *args: str) -> str:
    """Run a `nextoffer` command in process; its standard output (asserted exit 0)."""
    result = CliRunner().invoke(cli, list(args), env=env_of(world.settings))
    assert result.exit_code == 0, result.output
    return result.stdout


def audit_rows(engine: Engine) -> list[dict[str, object]]:
    """Every stored audit entry."""
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(AuditRecord.__table__))]


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)]
)
def world_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One database per engine for the module's tests (each works on its own customers)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('audit') / 'nextoffer.db'}"
        return
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(scope="module")
def world(world_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp_path = tmp_path_factory.mktemp("audit-world")
    engine = make_engine(world_url)
    upgrade(engine)
    add_products(engine)
    add_customers(engine, CUSTOMERS)
    scored = datetime(2026, 11, 30, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(
            update(Customer).where(Customer.customer_id == VICTIM).values(display_name=VICTIM_NAME)
        )
        conn.execute(
            insert(ChurnScore),
            [
                {
                    "customer_id": c,
                    "scored_at": scored,
                    "score": 0.61,
                    "band": "high",
                    "model_version": "1",
                    "top_reasons": [],
                }
                for c in CUSTOMERS
            ],
        )
    settings = Settings(
        database_url=world_url,
        var_dir=tmp_path / "var",
        registry_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifacts_url=f"file://{tmp_path / 'artifacts'}",
        exposure_flush_s=3600,
        audit_flush_s=3600,  # each test flushes when it wants to look
        console_secure_cookies=False,
    )
    keys = {}
    for role in ("viewer", "writer", "operator", "admin"):
        record, key = create_api_key(engine, f"audit {role}", Role(role))
        keys[role] = (record.key_id, key)
    create_user(engine, "agent1", PASSWORD, Role.VIEWER)
    create_user(engine, "auditor", PASSWORD, Role.ADMIN)
    app = create_app(settings, engine=engine, cache=MemoryCache())
    with TestClient(app) as client:
        yield World(settings, engine, app, client, keys)
    engine.dispose()


def test_customer_reads_appear_with_their_actor(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.log_in("agent1")
    page = world.client.get(f"/customers/{READ}")
    assert page.status_code == 200, page.text
    assert READ in page.text
    with caplog.at_level(logging.INFO, logger="nextoffer.access"):
        risk = world.client.get(
            f"/v1/customers/{READ}/churn-risk",
            headers={**world.header("viewer"), "X-Request-ID": "audit-req-0001"},
        )
    assert risk.status_code == 200, risk.text
    assert risk.json()["band"] == "high"
    # Another customer's read, and a refused one (no credentials): neither in READ's trail.
    assert world.client.get(f"/v1/customers/{NEXT}/segment", headers=world.header("viewer"))
    assert world.client.get(f"/v1/customers/{READ}/churn-risk").status_code == 401
    world.flush()

    key_id = world.keys["viewer"][0]
    # The access log names the caller, as the trail does.
    access = [r for r in caplog.records if getattr(r, "route", "").endswith("churn-risk")]
    assert [getattr(r, "actor", None) for r in access] == [f"key:{key_id}"]

    lines = nextoffer(world, "audit", "--customer", READ).splitlines()
    assert len(lines) == 2, lines
    api, console = lines  # newest first
    assert f"key:{key_id}  customer.read  GET /v1/customers/{{customer_id}}/churn-risk" in api
    assert "from testclient" in api
    assert "request audit-req-0001" in api
    assert "status=200" in api
    assert "user:agent1  customer.read  GET /customers/{customer_id}" in console
    assert "status=200" in console
    digest = customer_digest(resolve_privacy_key(world.settings), READ)
    assert f"customer {digest[:12]}" in api and f"customer {digest[:12]}" in console

    by_agent = nextoffer(
        world, "audit", "--customer", READ, "--actor", "user:agent1", "--since", "1h"
    ).splitlines()
    assert by_agent == [console]
    assert nextoffer(world, "audit", "--since", "2999-01-01").strip() == "audit: no entries match"
    other = nextoffer(world, "audit", "--customer", NEXT).splitlines()
    assert len(other) == 1 and "/segment" in other[0]


def test_changes_appear_and_only_admins_see_the_page(world: World) -> None:
    start = datetime.now(UTC).isoformat()
    body = {
        "name": "audited",
        "unit": "customer",
        "variants": [
            {"name": "control", "strategy": "control"},
            {"name": "treatment", "strategy": "popular"},
        ],
    }
    operator = world.header("operator")
    made = world.client.post("/v1/experiments", json=body, headers=operator)
    assert made.status_code == 201, made.text
    experiment_id = made.json()["experiment_id"]
    stopped = world.client.post(f"/v1/experiments/{experiment_id}/stop", headers=operator)
    assert stopped.status_code == 200, stopped.text
    world.flush()
    created = CliRunner().invoke(
        cli,
        ["keys", "create", "--role", "viewer", "--name", "audit-made"],
        env=env_of(world.settings),
    )
    assert created.exit_code == 0, created.output
    new_key_id = next(r[0] for r in _key_ids(world.engine) if r[1] == "audit-made")

    operator_id = world.keys["operator"][0]
    lines = nextoffer(world, "audit", "--since", start).splitlines()
    assert len(lines) == 3, lines
    key_line, stop_line, start_line = lines
    assert re.search(
        rf"cli:\S+  key\.create  {new_key_id}  from \S+  name=audit-made  role=viewer", key_line
    )
    assert f"key:{operator_id}  experiment.stop  {experiment_id}  from testclient" in stop_line
    assert f"key:{operator_id}  experiment.start  {experiment_id}  from testclient" in start_line
    assert "name=audited" in start_line
    only_starts = nextoffer(world, "audit", "--action", "experiment.start", "--actor", operator_id)
    assert only_starts.splitlines() == [start_line]

    # Consent (a PUT and a consent event) and an erasure through the API.
    writer = world.header("writer")
    put = world.client.put(
        f"/v1/customers/{CONSENTING}/consent",
        json={"channels": {"telesales": False}},
        headers=writer,
    )
    assert put.status_code == 200, put.text
    event = {"customer_id": CONSENTING, "event_type": "consent_granted", "channel": "web"}
    assert world.client.post("/v1/events", json=event, headers=writer).status_code == 201
    erased = world.client.delete(f"/v1/customers/{CONSENTING}", headers=world.header("admin"))
    assert erased.status_code == 200, erased.text
    world.flush()
    writer_id, admin_id = world.keys["writer"][0], world.keys["admin"][0]
    about = nextoffer(world, "audit", "--customer", CONSENTING).splitlines()
    assert len(about) == 3, about
    assert f"key:{admin_id}  customer.erase  DELETE /v1/customers/{{customer_id}}" in about[0]
    assert "status=200" in about[0]
    assert f"key:{writer_id}  consent.change  event web" in about[1]
    assert "granted=True" in about[1]
    assert f"key:{writer_id}  consent.change  PUT /v1/customers/{{customer_id}}/consent" in about[2]

    world.log_in("agent1")
    refused = world.client.get("/audit")
    assert refused.status_code == 403
    assert "Audit</a>" not in world.client.get("/customers").text
    world.log_in("auditor")
    page = world.client.get("/audit", params={"actor": operator_id})
    assert page.status_code == 200, page.text
    actions = re.findall(r'<tr data-actor="([^"]+)" data-action="([^"]+)"', page.text)
    assert actions == [
        (f"key:{operator_id}", "experiment.stop"),
        (f"key:{operator_id}", "experiment.start"),
    ]
    assert 'href="/audit"' in page.text
    about_page = world.client.get("/audit", params={"customer": CONSENTING}).text
    digest = customer_digest(resolve_privacy_key(world.settings), CONSENTING)
    shown = re.findall(r'data-action="([^"]+)" data-customer="([^"]*)"', about_page)
    assert shown == [
        ("customer.erase", digest),
        ("consent.change", digest),
        ("consent.change", digest),
    ]
    # The id is in the filter as typed, and nowhere in the table.
    assert CONSENTING in about_page and CONSENTING not in about_page.split('id="audit"')[1]


def _key_ids(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [
            (str(k), str(n)) for k, n in conn.execute(text("SELECT key_id, name FROM api_keys"))
        ]


def test_append_only_through_the_apps_engine_and_kept_through_erasure(world: World) -> None:
    world.log_in("agent1")
    page = world.client.get(f"/customers/{VICTIM}")
    assert page.status_code == 200 and VICTIM_NAME in page.text
    risk = world.client.get(f"/v1/customers/{VICTIM}/churn-risk", headers=world.header("viewer"))
    assert risk.status_code == 200
    world.flush()
    before = audit_rows(world.engine)
    digest = customer_digest(resolve_privacy_key(world.settings), VICTIM)
    assert len([r for r in before if r["customer_digest"] == digest]) == 2

    engine = world.platform.engine  # the application's own engine and credentials
    for statement in ("UPDATE audit SET actor_id = 'nobody'", "DELETE FROM audit"):
        with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    if engine.dialect.name == "postgresql":
        with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
            conn.execute(text("TRUNCATE audit"))
    assert audit_rows(world.engine) == before

    nextoffer(world, "customers", "forget", VICTIM)
    with world.engine.connect() as conn:
        assert conn.execute(select(Customer).where(Customer.customer_id == VICTIM)).first() is None
    rows = audit_rows(world.engine)
    assert [r for r in rows if r["id"] in {x["id"] for x in before}] == before  # untouched
    erased = [r for r in rows if r["id"] not in {x["id"] for x in before}]
    assert [(r["action"], r["actor_kind"], r["customer_digest"]) for r in erased] == [
        ("customer.erase", "cli", digest)
    ]
    # Every column of every entry: digests, never an id or a name.
    dumped = repr(rows)
    assert all(c not in dumped for c in CUSTOMERS) and VICTIM_NAME not in dumped
    lines = nextoffer(world, "audit", "--customer", VICTIM).splitlines()
    assert [line.split("  ")[2] for line in lines] == [
        "customer.erase",
        "customer.read",
        "customer.read",
    ]


def test_routes_name_their_action() -> None:
    assert action_of("GET", "/v1/customers/{customer_id}/churn-risk") is Action.CUSTOMER_READ
    assert action_of("GET", "/customers/{customer_id}") is Action.CUSTOMER_READ
    assert action_of("DELETE", "/v1/customers/{customer_id}") is Action.CUSTOMER_ERASE
    assert action_of("PUT", "/v1/customers/{customer_id}/consent") is Action.CONSENT_CHANGE
    assert action_of("POST", "/customers/{customer_id}/events") is Action.CUSTOMER_CHANGE


def test_entries_spooled_while_the_database_is_down_are_written_once(
    down_engine: Engine, sqlite_url: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool" / "audit"
    entry = AuditEntry.of(
        Actor("key", "k1", "10.0.0.9", "req-1"),
        Action.CUSTOMER_READ,
        "GET /v1/customers/{customer_id}/offers",
        customer_digest=customer_digest("k" * 40, VICTIM),
        detail={"status": 200},
    )
    down = AuditTrail(down_engine, spool, lambda: "k" * 40, process_tag="a")
    assert down.record(entry)
    assert down.flush() == 1
    assert down.spool_depth() == 1 and down.pending() == 0

    engine = make_engine(sqlite_url)
    upgrade(engine)
    up = AuditTrail(engine, spool, lambda: "k" * 40, process_tag="b")
    assert up.replay().stored == 1
    assert up.spool_files() == []
    # A crash between the commit and the file's removal replays it again: stored once.
    up.spool.append([entry.to_json()])
    up.replay()
    rows = audit_rows(engine)
    assert len(rows) == 1
    assert rows[0]["id"] == entry.id and rows[0]["address"] == "10.0.0.9"
    assert rows[0]["detail"] == {"status": 200} and rows[0]["request_id"] == "req-1"
    engine.dispose()
