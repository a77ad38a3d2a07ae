"""Erasure on request, the erasure ledger, right of access and retention, on both databases.

The victim gets a unique name; after `forget` no column of any table (found by
reflection, not by a list), no cache entry and no file under VAR_DIR holds the id or the
name. A backup taken before the erasure, restored, does not bring the customer back, and
a new import naming the customer drops those rows and counts them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, MetaData, insert, select, text, update

from nextoffer.asgi import create_app
from nextoffer.cache.memory import MemoryCache
from nextoffer.config import Settings
from nextoffer.domain.errors import ConfigError, NotFoundError
from nextoffer.domain.roles import Role
from nextoffer.jobs.calls import create_backup, run_retention
from nextoffer.ops.restore import restore_backup
from nextoffer.pipelines.etl import run_ingest
from nextoffer.platform import build_platform
from nextoffer.serving.api_keys import create_api_key
from nextoffer.storage import erasure_log
from nextoffer.store import migrate
from nextoffer.store.engine import make_engine
from nextoffer.store.schema import (
    ChurnScore,
    ContactHistory,
    ControlGroupMember,
    Customer,
    Event,
    Exposure,
    PrecomputedOffers,
    Transaction,
)
from nextoffer.usecases.privacy import export_customer, forget_customers
from tests.helpers import header, write_csv, write_world

VICTIM = "C000001"  # write_world's customer 1: a quarantined transaction of theirs too
OTHER = "C000002"
NOW = datetime(2026, 12, 1, tzinfo=UTC)


@dataclass
class World:
    settings: Settings
    engine: Engine
    cache: MemoryCache
    name: str


def _settings(database_url: str, tmp_path: Path, **extra: object) -> Settings:
    var = tmp_path / "var"
    if database_url.startswith("sqlite"):  # where a default deployment keeps it: under var
        var.mkdir(parents=True, exist_ok=True)
        database_url = f"sqlite:///{var / 'nextoffer.db'}"
    return Settings(
        database_url=database_url,
        var_dir=var,
        backup_url=(tmp_path / "backups").as_uri(),
        registry_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifacts_url=(tmp_path / "artifacts").as_uri(),
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> Iterator[World]:
    """A loaded world whose victim is everywhere: tables, quarantine, spool, cache."""
    settings = _settings(database_url, tmp_path)
    engine = make_engine(settings.database_url)
    migrate.upgrade(engine)
    run_ingest(engine, settings, write_world(tmp_path / "world", customers=12, bad_every=5).root)
    name = f"Erin Vanishwell {uuid.uuid4().hex[:10]}"
    at = NOW - timedelta(days=3)
    with engine.begin() as conn:
        conn.execute(
            update(Customer).where(Customer.customer_id == VICTIM).values(display_name=name)
        )
        for cid in (VICTIM, OTHER):
            conn.execute(
                insert(PrecomputedOffers).values(
                    customer_id=cid,
                    offers=[{"product_id": "MOB-L"}],
                    model_version="v1",
                    computed_at=at,
                )
            )
            conn.execute(
                insert(ChurnScore).values(
                    customer_id=cid,
                    scored_at=at,
                    score=0.4,
                    band="medium",
                    model_version="v1",
                    top_reasons=[],
                )
            )
            conn.execute(
                insert(ControlGroupMember).values(
                    customer_id=cid, entered_on=date(2026, 1, 1), share=0.05
                )
            )
            conn.execute(
                insert(Exposure).values(
                    exposure_id=f"x-{cid}",
                    customer_id=cid,
                    exposed_at=at,
                    arm="treated",
                    product_ids="MOB-L",
                    unit_id=cid,
                    source="api",
                )
            )
            conn.execute(
                insert(ContactHistory).values(
                    contact_id=f"k-{cid}",
                    customer_id=cid,
                    product_id="MOB-L",
                    channel="web",
                    contacted_at=at,
                )
            )
    spool = settings.spool_dir / "events-test.jsonl"
    spool.parent.mkdir(parents=True, exist_ok=True)
    spool.write_text(
        "".join(
            json.dumps({"event_id": f"e-{cid}", "customer_id": cid, "session_id": f"sess-{cid}"})
            + "\n"
            for cid in (VICTIM, OTHER)
        )
    )
    cache = MemoryCache()
    for cid in (VICTIM, OTHER):
        cache.set(f"offers:s1.v1:{cid}", json.dumps({"customer_id": cid, "name": "x"}))
        cache.set(f"user:segment:{cid}", "3")
    cache.set("session:variant:sess-1-0", "B")  # the victim's session (write_world's)
    try:
        yield World(settings, engine, cache, name)
    finally:
        engine.dispose()


def traces(world: World, engine: Engine | None = None) -> list[str]:
    """Where the victim's id or name still is: table.column, cache key, or file."""
    engine = engine or world.engine
    needles = (VICTIM, world.name)
    found = []
    metadata = MetaData()
    metadata.reflect(engine)  # every table there is, not the ones the code knows about
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)).mappings():
                for column, value in row.items():
                    if any(n in str(value) for n in needles):
                        found.append(f"{table.name}.{column}")
    for key, (value, _expiry) in world.cache._entries.items():
        if any(n in key or n in value for n in needles):
            found.append(f"cache {key}")
    for path in world.settings.var_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if any(n.encode() in data for n in needles):
                found.append(f"file {path.relative_to(world.settings.var_dir)}")
    return sorted(set(found))


def count_of(engine: Engine, customer: str) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(Customer).where(Customer.customer_id == customer)).all())


def events_of(engine: Engine, customer: str) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(Event).where(Event.customer_id == customer)).all())


def test_forget_leaves_no_trace_and_neither_restore_nor_import_brings_the_customer_back(
    world: World, tmp_path: Path
) -> None:
    settings, engine = world.settings, world.engine
    before = traces(world)
    for where in (
        "customers.display_name",
        "transactions.customer_id",
        "events.customer_id",
        "quarantine.raw",
        "exposures.unit_id",
        "control_group.customer_id",
    ):
        assert where in before, before
    assert "file spool/events-test.jsonl" in before
    assert any(t.startswith("file quarantine/transactions.") for t in before)
    backup = create_backup(settings)

    platform = build_platform(settings, engine=engine, cache=world.cache)
    try:
        exported = export_customer(platform.services, VICTIM)
        assert exported["tables"]["customers"][0]["display_name"] == world.name
        assert {r["customer_id"] for r in exported["tables"]["transactions"]} == {VICTIM}
        assert len(exported["tables"]["events"]) == events_of(engine, VICTIM) > 0
        assert VICTIM in json.dumps(exported["tables"]["quarantine"])
        json.dumps(exported)  # JSON-ready as a whole

        result = forget_customers(platform.services, [VICTIM])
        with pytest.raises(NotFoundError):  # nothing left: the second asks for nobody
            forget_customers(platform.services, [VICTIM])
        assert traces(world) == []  # before closing the platform, which empties the cache
        assert world.cache.get(f"user:segment:{OTHER}") == "3"
        assert world.cache.get(f"offers:s1.v1:{OTHER}") is not None
    finally:
        platform.close()
    assert result.customers == 1 and result.rows["events"] == len(exported["tables"]["events"])
    assert result.cache_keys == 3 and result.file_lines >= 2  # spool line, quarantine record
    assert traces(world) == []
    assert count_of(engine, OTHER) == 1
    assert OTHER in (settings.spool_dir / "events-test.jsonl").read_text()
    digests = erasure_log.read_local(settings.var_dir)
    assert digests == set(result.digests) and len(digests) == 1
    assert erasure_log.read_published(erasure_log_store(settings)) == digests

    restored = restore_backup(settings, backup.backup_id, None, True, None, registry=False)
    assert restored.erased_again == 1
    assert traces(world) == []
    assert count_of(engine, OTHER) == 1

    # A new file still naming the victim: those rows are dropped and counted, not quarantined.
    drop = tmp_path / "drop"
    rows = [
        [f"T-new-{cid}-{n}", cid, "MOB-L", "2024-03-01T10:00:00Z", "purchase", amount, "web"]
        for cid in (VICTIM, OTHER)
        for n, amount in enumerate(("10.00", "-1"))  # one good and one bad row each
    ]
    write_csv(drop / "transactions.csv", header("transactions"), rows)
    ingested = run_ingest(engine, settings, drop)
    assert ingested.rows_erased == 2 and ingested.rows_loaded == 1
    assert ingested.rows_quarantined == 1
    assert traces(world) == []
    with engine.connect() as conn:
        loaded = conn.execute(
            select(Transaction.customer_id).where(Transaction.transaction_id.like("T-new-%"))
        )
        assert [r[0] for r in loaded] == [OTHER]


def erasure_log_store(settings: Settings):  # type: ignore[no-untyped-def]
    from nextoffer.ops.backup import backup_store

    return backup_store(settings)


def test_delete_customer_api_needs_admin_and_answers_404_for_unknown(
    sqlite_url: str, tmp_path: Path
) -> None:
    settings = _settings(sqlite_url, tmp_path)
    engine = make_engine(settings.database_url)
    migrate.upgrade(engine)
    run_ingest(engine, settings, write_world(tmp_path / "world", customers=4).root)
    _r, admin = create_api_key(engine, "admin", Role.ADMIN)
    _r, viewer = create_api_key(engine, "viewer", Role.VIEWER)
    app = create_app(settings, engine=engine, cache=MemoryCache())
    try:
        with TestClient(app) as client:
            url = f"/v1/customers/{VICTIM}"
            assert client.delete(url, headers={"X-API-Key": viewer}).status_code == 403
            missing = client.delete("/v1/customers/C-NOBODY", headers={"X-API-Key": admin})
            assert missing.status_code == 404
            assert missing.headers["content-type"].startswith("application/problem+json")
            assert "C-NOBODY" in missing.json()["detail"]
            done = client.delete(url, headers={"X-API-Key": admin})
            assert done.status_code == 200, done.text
            body = done.json()
            assert body["rows"]["customers"] == 1 and body["rows"]["events"] == 8  # no bad rows
            assert VICTIM not in done.text
            assert client.delete(url, headers={"X-API-Key": admin}).status_code == 404
    finally:
        engine.dispose()
    assert count_of(make_engine(settings.database_url), VICTIM) == 0


def test_retention_refuses_a_window_it_would_cut_and_purges_older_rows(
    sqlite_url: str, tmp_path: Path
) -> None:
    short = _settings(
        sqlite_url, tmp_path, retention_events_months=3, retention_contact_history_months=1
    )
    engine = make_engine(short.database_url)
    migrate.upgrade(engine)
    run_ingest(engine, short, write_world(tmp_path / "world", customers=6).root)
    with pytest.raises(ConfigError) as refused:
        run_retention(engine, short)
    message = str(refused.value)
    assert "NEXTOFFER_RETENTION_EVENTS_MONTHS=3 is shorter than the training window" in message
    assert "impact window" in message
    assert "CONTACT_HISTORY" not in message  # 1 month covers the 30-day contact cap

    ok = _settings(
        sqlite_url, tmp_path, retention_events_months=12, retention_transactions_months=0
    )
    with engine.connect() as conn:
        events = conn.execute(text("SELECT count(*) FROM events")).scalar_one()
    dry = run_retention(engine, ok, dry_run=True)
    assert dry.purged == {"events": events}  # write_world's events are from 2024
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM events")).scalar_one() == events
    done = run_retention(engine, ok)
    assert done.purged == {"events": events}
    with engine.connect() as conn:
        assert conn.execute(select(Event)).first() is None
        assert conn.execute(select(Transaction)).first() is not None  # 0: kept forever
    engine.dispose()
