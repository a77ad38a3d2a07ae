"""Offer events: stored exactly once, spooled while the database is down, replayed without loss."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select

from nextoffer.domain.vocabulary import EventType
from nextoffer.serving import events as events_module
from nextoffer.serving import spool_replay
from nextoffer.serving.events import (
    EventWriter,
    OfferEvent,
    RecordResult,
    ReplayResult,
    start_replayer,
)
from nextoffer.serving.spool_replay import TRUNCATED_REASON
from nextoffer.store.engine import make_engine
from nextoffer.store.migrate import upgrade
from nextoffer.store.schema import ContactHistory, Customer, Event, Product, QuarantinedRow

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A migrated database holding product P1 and customers C1, C2."""
    yield from seeded(database_url)


def seeded(database_url: str) -> Iterator[Engine]:
    """The `engine` fixture's database at `database_url`."""
    engine = make_engine(database_url)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(Product),
            [
                {
                    "product_id": "P1",
                    "name": "Extra data",
                    "category": "addon",
                    "price": 5,
                    "margin": 4,
                }
            ],
        )
        conn.execute(
            insert(Customer),
            [
                {
                    "customer_id": customer_id,
                    "display_name": f"Customer {customer_id}",
                    "age_band": "25-34",
                    "region": "north",
                    "signup_date": date(2024, 1, 1),
                    "contract_type": "month_to_month",
                    "payment_method": "direct_debit",
                    "arpu": Decimal(30),
                }
                for customer_id in ("C1", "C2")
            ],
        )
    yield engine
    engine.dispose()


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


def ev(
    event_id: str,
    event_type: str = "offer_impression",
    customer_id: str = "C1",
    product_id: str = "P1",
    ts: datetime = T0,
) -> OfferEvent:
    return OfferEvent(
        event_id=event_id,
        customer_id=customer_id,
        event_type=EventType(event_type),
        product_id=product_id,
        ts=ts,
        channel="app",
        session_id="s1",
        experiment_id="exp-1",
        variant="B",
    )


def stored_ids(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(Event.event_id).order_by(Event.event_id)).scalars())


def count(engine: Engine, table: type[Event] | type[ContactHistory] | type[QuarantinedRow]) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def as_utc(value: datetime) -> datetime:
    # SQLite hands back the stored UTC wall time without a zone.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def spool_lines(spool_dir: Path) -> list[str]:
    return [
        line
        for path in sorted(spool_dir.iterdir())
        for line in path.read_text(encoding="utf-8").splitlines()
        if line
    ]


# --- the event record ---------------------------------------------------------------------


def test_offer_event_validates_and_round_trips() -> None:
    event = OfferEvent("E1", "C1", "offer_click", "P1", T0, variant="A")  # type: ignore[arg-type]
    assert event.event_type is EventType.OFFER_CLICK
    assert OfferEvent.from_json(event.to_json()) == event
    assert OfferEvent.from_json(event.to_json().encode()) == event
    with pytest.raises(ValueError, match="not an offer event"):
        OfferEvent("E1", "C1", EventType.WEB_VISIT, "P1", T0)
    with pytest.raises(ValueError, match="time zone"):
        OfferEvent("E1", "C1", EventType.OFFER_CLICK, "P1", datetime(2026, 6, 1))
    with pytest.raises(ValueError, match="product_id is empty"):
        OfferEvent("E1", "C1", EventType.OFFER_CLICK, "", T0)
    with pytest.raises(ValueError, match="longer than 64"):
        OfferEvent("E" * 65, "C1", EventType.OFFER_CLICK, "P1", T0)
    with pytest.raises(ValueError, match="unknown fields"):
        OfferEvent.from_json(event.to_json()[:-1] + ',"extra":1}')


# --- the database path -----------------------------------------------------------------------


def test_record_stores_events_and_impressions_as_contacts(engine: Engine, spool_dir: Path) -> None:
    writer = EventWriter(engine, spool_dir)
    cet = timezone(timedelta(hours=2))
    batch = [
        ev("E1", "offer_impression", ts=T0.astimezone(cet)),
        ev("E2", "offer_click"),
        ev("E3", "offer_accept", customer_id="C2"),
        ev("E4", "offer_decline"),
        ev("E5", "offer_impression", customer_id="C2"),
    ]
    assert writer.record(batch) == RecordResult(stored=5)
    assert stored_ids(engine) == ["E1", "E2", "E3", "E4", "E5"]
    with engine.connect() as conn:
        row = conn.execute(select(Event).where(Event.event_id == "E1")).one()
        contacts = conn.execute(select(ContactHistory).order_by(ContactHistory.contact_id)).all()
    assert as_utc(row.ts) == T0
    assert (row.event_type, row.product_id, row.channel, row.session_id) == (
        "offer_impression",
        "P1",
        "app",
        "s1",
    )
    assert (row.experiment_id, row.variant) == ("exp-1", "B")
    assert [(c.contact_id, c.customer_id, c.product_id, c.outcome) for c in contacts] == [
        ("E1", "C1", "P1", None),
        ("E5", "C2", "P1", None),
    ]
    assert as_utc(contacts[0].contacted_at) == T0
    assert not spool_dir.exists() or not list(spool_dir.iterdir())


def test_rerecording_the_same_ids_stores_nothing_new(engine: Engine, spool_dir: Path) -> None:
    writer = EventWriter(engine, spool_dir)
    batch = [ev("E1"), ev("E2", "offer_click")]
    assert writer.record(batch).stored == 2
    again = writer.record([*batch, ev("E3"), ev("E3")])
    assert again == RecordResult(stored=1, duplicates=3)
    assert stored_ids(engine) == ["E1", "E2", "E3"]
    assert count(engine, ContactHistory) == 2


def test_unknown_customer_or_product_is_rejected_with_its_reason(
    engine: Engine, spool_dir: Path
) -> None:
    writer = EventWriter(engine, spool_dir)
    result = writer.record(
        [ev("E1"), ev("E2", customer_id="NOBODY"), ev("E3", "offer_click", product_id="NOPE")]
    )
    assert (result.stored, result.duplicates, result.spooled) == (1, 0, 0)
    assert [(r.event_id, r.reason) for r in result.rejected] == [
        ("E2", "unknown_customer: customer_id 'NOBODY' not found"),
        ("E3", "unknown_product: product_id 'NOPE' not found"),
    ]
    assert stored_ids(engine) == ["E1"]
    assert count(engine, ContactHistory) == 1


# --- the spool path ------------------------------------------------------------------------


def test_database_down_spools_fsynced_then_replay_stores_exactly_once(
    engine: Engine, down_engine: Engine, spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    down = EventWriter(down_engine, spool_dir, process_tag="api")
    batch = [ev("E1"), ev("E2", "offer_accept"), ev("E3", customer_id="NOBODY")]
    assert down.record(batch) == RecordResult(spooled=3)
    assert synced, "spooled events must be fsynced before record returns"
    assert down.spool_file.name.startswith("events-")
    assert down.spool_file.name.endswith(f"-{os.getpid()}-api.jsonl")
    assert down.spool_file.is_file()
    assert [OfferEvent.from_json(line) for line in spool_lines(spool_dir)] == batch
    assert down.record([ev("E4", "offer_click")]).spooled == 1
    assert down.spool_depth() == 4

    # Still down: nothing replayed, the file stays where it is.
    assert down.replay() == ReplayResult(remaining_files=1)
    assert down.spool_file.is_file()

    up = EventWriter(engine, spool_dir)
    assert up.spool_depth() == 4
    assert up.replay() == ReplayResult(replayed=3, quarantined=1, remaining_files=0)
    assert stored_ids(engine) == ["E1", "E2", "E4"]
    assert count(engine, ContactHistory) == 1
    assert up.spool_files() == []
    assert [r["raw"] for r in quarantined_file(spool_dir)] == [batch[2].to_json()]
    assert up.spool_depth() == 0

    assert up.replay() == ReplayResult()
    assert up.record(batch[:2]).duplicates == 2
    assert stored_ids(engine) == ["E1", "E2", "E4"]


def test_replay_counts_duplicates_quarantine_and_a_truncated_line(
    engine: Engine, spool_dir: Path
) -> None:
    writer = EventWriter(engine, spool_dir)
    assert writer.record([ev("E1")]).stored == 1
    spool_dir.mkdir(parents=True, exist_ok=True)
    truncated = ev("E9").to_json()[:25]
    content = (
        f"{ev('E1').to_json()}\n"
        f"{ev('E2', 'offer_click').to_json()}\n"
        f"{ev('E3', customer_id='NOBODY').to_json()}\n"
        "\n"
        "not json\n"
        f"{ev('E4', 'offer_decline', product_id='NOPE').to_json()}\n"
        f"{ev('E2', 'offer_click').to_json()}\n"
        f"{truncated}"
    )
    name = "events-otherhost-42.jsonl"
    (spool_dir / name).write_text(content, encoding="utf-8")

    result = writer.replay()
    assert result == ReplayResult(replayed=1, duplicates=2, quarantined=4, remaining_files=0)
    assert stored_ids(engine) == ["E1", "E2"]
    with engine.connect() as conn:
        rows = conn.execute(select(QuarantinedRow).order_by(QuarantinedRow.line)).all()
    assert [(r.entity, r.source, r.line) for r in rows] == [
        ("events", name, 3),
        ("events", name, 5),
        ("events", name, 6),
        ("events", name, 8),
    ]
    assert rows[0].reason == "unknown_customer: customer_id 'NOBODY' not found"
    assert rows[1].reason.startswith("invalid spool line: ")
    assert rows[2].reason == "unknown_product: product_id 'NOPE' not found"
    assert rows[3].reason == TRUNCATED_REASON
    assert rows[3].raw == truncated
    assert rows[0].raw == ev("E3", customer_id="NOBODY").to_json()
    assert len({r.source_sha256 for r in rows}) == 1

    # A crash after commit and before the delete: the same file replays to nothing new.
    (spool_dir / name).write_text(content, encoding="utf-8")
    again = writer.replay()
    assert again == ReplayResult(replayed=0, duplicates=3, quarantined=4, remaining_files=0)
    assert stored_ids(engine) == ["E1", "E2"]
    assert count(engine, QuarantinedRow) == 4


def poisoned_spool(spool_dir: Path) -> tuple[str, str]:
    """A hand-written spool file of good events around poisoned lines: (name, NUL line)."""
    spool_dir.mkdir(parents=True, exist_ok=True)
    nul = ev("E2").to_json().replace('"s1"', '"s\\u0000x"')
    content = (
        f"{ev('E1').to_json()}\n"
        f"{nul}\n"
        f"{ev('E3', 'offer_click').to_json()}\n"
        f"{ev('E4').to_json().replace(T0.isoformat(), '0001-01-01T00:00:00+14:00')}\n"
        f"{ev('E5', 'offer_accept', customer_id='C2').to_json()}\n"
    )
    name = "events-api-1-7.jsonl"
    (spool_dir / name).write_text(content, encoding="utf-8")
    return name, nul


def quarantined_file(spool_dir: Path) -> list[dict[str, Any]]:
    """The records of the spool's quarantine files (asserted owner-only)."""
    folder = spool_dir / spool_replay.QUARANTINE_SUBDIR
    assert folder.stat().st_mode & 0o777 == 0o700
    records = []
    for path in sorted(folder.iterdir()):
        assert path.stat().st_mode & 0o777 == 0o600
        records += [json.loads(line) for line in path.read_text().splitlines()]
    return records


def test_a_poisoned_spool_line_is_quarantined_and_never_blocks_the_rest(
    engine: Engine, spool_dir: Path
) -> None:
    """H3: a NUL (refused by PostgreSQL) and a time out of range are quarantined with
    their reasons, in the table and a file; every other event is stored exactly once."""
    name, nul = poisoned_spool(spool_dir)
    writer = EventWriter(engine, spool_dir)
    assert writer.spool_depth() == 5

    assert writer.replay() == ReplayResult(replayed=3, quarantined=2, remaining_files=0)
    assert stored_ids(engine) == ["E1", "E3", "E5"]
    assert count(engine, ContactHistory) == 1  # E1, the one impression stored
    assert writer.spool_depth() == 0 and writer.spool_files() == []
    with engine.connect() as conn:
        rows = conn.execute(select(QuarantinedRow).order_by(QuarantinedRow.line)).all()
    assert [(r.source, r.line) for r in rows] == [(name, 2), (name, 4)]
    assert "session_id contains NUL" in rows[0].reason
    assert "outside 1900-2100" in rows[1].reason
    records = quarantined_file(spool_dir)
    assert [(r["source"], r["line"]) for r in records] == [(name, 2), (name, 4)]
    assert records[0]["raw"] == nul  # the line exactly as spooled
    assert records[0]["reason"] == rows[0].reason

    # Replayed again (a crash before the delete): nothing twice, the same quarantine file.
    name, _ = poisoned_spool(spool_dir)
    assert writer.replay() == ReplayResult(duplicates=3, quarantined=2, remaining_files=0)
    assert stored_ids(engine) == ["E1", "E3", "E5"]
    assert len(quarantined_file(spool_dir)) == 2


@pytest.mark.integration
def test_a_line_the_database_refuses_is_quarantined_and_the_rest_stored_once(
    postgres_url: str, spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """H3 on PostgreSQL with the spool on its own: a spool written before events were
    checked (the check switched off here) holds a NUL that PostgreSQL refuses. The file is
    then stored event by event; the refused line alone is quarantined."""
    databases = seeded(postgres_url)
    engine = next(databases)
    monkeypatch.setattr(events_module, "text_problem", lambda *_args: None)
    monkeypatch.setattr(events_module, "date_problem", lambda *_args: None)
    _, nul = poisoned_spool(spool_dir)
    writer = EventWriter(engine, spool_dir)

    result = writer.replay()
    assert result == ReplayResult(replayed=3, quarantined=2, remaining_files=0)
    assert stored_ids(engine) == ["E1", "E3", "E5"]
    records = quarantined_file(spool_dir)
    assert [r["line"] for r in records] == [2, 4]
    assert records[0]["reason"].startswith("refused when stored: ")
    assert "0x00" in records[0]["reason"] or "NUL" in records[0]["reason"]
    assert records[0]["raw"] == nul
    with engine.connect() as conn:
        reasons = conn.execute(select(QuarantinedRow.line, QuarantinedRow.reason)).all()
    assert sorted(line for line, _ in reasons) == [2, 4]
    assert writer.replay() == ReplayResult()
    next(databases, None)


def test_concurrent_replay_stores_every_event_exactly_once(
    engine: Engine, down_engine: Engine, spool_dir: Path
) -> None:
    expected: list[str] = []
    for replica in range(6):
        down = EventWriter(down_engine, spool_dir, process_tag=f"r{replica}")
        for block in range(3):
            batch = [ev(f"E{replica}-{block}-{i:03d}") for i in range(100)]
            assert down.record(batch).spooled == 100
            expected += [e.event_id for e in batch]
    first, second = EventWriter(engine, spool_dir), EventWriter(engine, spool_dir)
    results: list[ReplayResult] = []
    start = threading.Barrier(2)

    def replay(writer: EventWriter) -> None:
        start.wait()
        results.append(writer.replay())

    threads = [threading.Thread(target=replay, args=(w,)) for w in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == 2
    assert sum(r.replayed for r in results) == len(expected)
    assert sum(r.quarantined for r in results) == 0
    assert stored_ids(engine) == sorted(expected)
    assert count(engine, ContactHistory) == len(expected)
    assert list(spool_dir.iterdir()) == []


def test_appends_racing_replays_lose_nothing(
    engine: Engine, down_engine: Engine, spool_dir: Path
) -> None:
    down = EventWriter(down_engine, spool_dir, process_tag="busy")
    replayers = [EventWriter(engine, spool_dir), EventWriter(engine, spool_dir)]
    done = threading.Event()
    expected: list[str] = []

    def append() -> None:
        for block in range(40):
            batch = [ev(f"A{block:02d}-{i}") for i in range(5)]
            assert down.record(batch).spooled == 5
            expected.extend(e.event_id for e in batch)
        done.set()

    def replay(writer: EventWriter) -> None:
        while not done.is_set():
            writer.replay()

    threads = [threading.Thread(target=append)]
    threads += [threading.Thread(target=replay, args=(w,)) for w in replayers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    replayers[0].replay()
    assert stored_ids(engine) == sorted(expected)
    assert list(spool_dir.iterdir()) == []


def test_a_dead_replayers_claim_is_taken_over(engine: Engine, spool_dir: Path) -> None:
    spool_dir.mkdir(parents=True)
    claimed = spool_dir / "events-gone-7.jsonl.replaying-gone-7-0123abcd"
    claimed.write_text(f"{ev('E1').to_json()}\n", encoding="utf-8")
    writer = EventWriter(engine, spool_dir)
    assert writer.spool_depth() == 1
    assert writer.replay() == ReplayResult(replayed=1)
    assert stored_ids(engine) == ["E1"]
    assert list(spool_dir.iterdir()) == []


def test_database_lost_mid_replay_gives_the_file_back(
    down_engine: Engine, spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    down = EventWriter(down_engine, spool_dir)
    assert down.record([ev("E1"), ev("E2")]).spooled == 2
    content = down.spool_file.read_bytes()
    # Reachable at the check, gone by the transaction: the claimed file must come back.
    monkeypatch.setattr(spool_replay, "ping", lambda engine: None)
    assert down.replay() == ReplayResult(remaining_files=1)
    assert [p.name for p in spool_dir.iterdir()] == [down.spool_file.name]
    assert down.spool_file.read_bytes() == content


def test_append_after_a_cut_line_keeps_new_lines_whole(
    engine: Engine, down_engine: Engine, spool_dir: Path
) -> None:
    down = EventWriter(down_engine, spool_dir)
    spool_dir.mkdir(parents=True)
    down.spool_file.write_text(ev("E0").to_json()[:30], encoding="utf-8")
    assert down.record([ev("E1"), ev("E2")]).spooled == 2
    result = EventWriter(engine, spool_dir).replay()
    assert result == ReplayResult(replayed=2, quarantined=1)
    assert stored_ids(engine) == ["E1", "E2"]
    with engine.connect() as conn:
        reason = conn.execute(select(QuarantinedRow.reason)).scalar_one()
    assert reason.startswith("invalid spool line: ")


def test_replayer_thread_survives_errors_and_drains_the_spool(
    engine: Engine, down_engine: Engine, spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert EventWriter(down_engine, spool_dir).record([ev("E1")]).spooled == 1
    writer = EventWriter(engine, spool_dir)
    real_replay = EventWriter.replay
    calls: list[int] = []

    def flaky(self: EventWriter) -> ReplayResult:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return real_replay(self)

    monkeypatch.setattr(EventWriter, "replay", flaky)
    stop = threading.Event()
    thread = start_replayer(writer, 0.05, stop)
    assert thread.daemon
    deadline = time.monotonic() + 30
    while stored_ids(engine) != ["E1"] and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert stored_ids(engine) == ["E1"]
    assert len(calls) >= 2
    assert writer.spool_files() == []


def test_is_database_down_recognises_a_refused_connection(down_engine: Engine) -> None:
    with pytest.raises(Exception) as caught, down_engine.connect():
        pass
    assert events_module.is_database_down(caught.value)
    assert not events_module.is_database_down(ValueError("no"))
