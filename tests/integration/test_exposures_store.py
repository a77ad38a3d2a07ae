"""Exposures and the control group in the database: once per unit a day, spooled, synced.

The recorder writes batches idempotently, records a held-out customer's entry with its
first exposure, spools while the database is down and replays once when it returns; the
daily sync keeps members' `entered_on` when the share changes and records who left.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete, func, insert, select

from nextoffer.config import Settings
from nextoffer.domain.control_group import control_mask
from nextoffer.domain.exposures import Arm, ExposureRecord, ExposureSource, new_exposure
from nextoffer.jobs.context import JobContext
from nextoffer.jobs.runner import run_exclusive
from nextoffer.serving.exposures import (
    ExposureRecorder,
    ExposureReplay,
    FlushResult,
    start_flusher,
)
from nextoffer.store import exposures as store
from nextoffer.store.engine import make_engine
from nextoffer.store.migrate import upgrade
from nextoffer.store.schema import ControlGroupMember, Customer, Exposure, QuarantinedRow

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
CUSTOMERS = [f"C{i:04d}" for i in range(400)]


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A migrated database holding `CUSTOMERS`."""
    engine = make_engine(database_url)
    upgrade(engine)
    with engine.begin() as conn:
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
                for customer_id in CUSTOMERS
            ],
        )
    yield engine
    engine.dispose()


def exposures(engine: Engine) -> dict[str, tuple[str, str, str, str | None]]:
    """{exposure_id: (customer, arm, product_ids, source)} as stored."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                Exposure.exposure_id,
                Exposure.customer_id,
                Exposure.arm,
                Exposure.product_ids,
                Exposure.source,
            )
        )
        return {str(i): (str(c), str(a), str(p), s) for i, c, a, p, s in rows}


def members(engine: Engine) -> dict[str, tuple[date, date | None, float]]:
    """{customer: (entered_on, left_on, share)} of `control_group`."""
    return {
        r.customer_id: (r.entered_on, r.left_on, r.share) for r in store.control_group_rows(engine)
    }


def treated(
    customer: str, at: datetime = T0, products: tuple[str, ...] = ("P1",)
) -> ExposureRecord:
    return new_exposure(customer, at, Arm.TREATED, products, channel="app", model_version="v1")


def held_out(customer: str, at: datetime = T0) -> ExposureRecord:
    return new_exposure(customer, at, Arm.CONTROL, ("P2", "P1"), model_version="v1")


def test_one_exposure_per_unit_a_day_however_often_and_by_whom_it_is_recorded(
    engine: Engine, tmp_path: Path
) -> None:
    counted: list[tuple[str, str, int]] = []
    first = ExposureRecorder(
        engine, tmp_path / "spool", share=0.1, on_stored=lambda *a: counted.append(a)
    )
    assert first.record(treated("C0001"))
    assert not first.record(treated("C0001", T0 + timedelta(hours=3), ("P9",)))  # same day
    assert first.record(treated("C0001", T0 + timedelta(days=1), ("P3",)))
    assert first.record(treated("NOBODY"))
    assert first.pending() == 3
    assert first.flush() == FlushResult(stored=2, rejected=1)
    assert first.pending() == 0 and first.flush() == FlushResult()

    # Another replica (its own queued ids) serving the same customer the same day.
    second = ExposureRecorder(engine, tmp_path / "spool", share=0.1)
    assert second.record(treated("C0001", T0 + timedelta(hours=5), ("P7",)))
    assert second.flush() == FlushResult(duplicates=1)
    assert exposures(engine) == {
        "C0001@2026-06-01": ("C0001", "treated", "P1", "api"),
        "C0001@2026-06-02": ("C0001", "treated", "P3", "api"),
    }
    assert counted == [("treated", "api", 2)]
    assert members(engine) == {}  # treated exposures make no control-group entry


def test_a_held_out_exposure_records_the_customers_entry_once(
    engine: Engine, tmp_path: Path
) -> None:
    recorder = ExposureRecorder(engine, tmp_path / "spool", share=0.05)
    recorder.record(held_out("C0002"))
    recorder.record(
        new_exposure("C0003", T0, Arm.CONTROL, ["P1"], experiment_id="e-1", variant="control")
    )
    recorder.flush()
    recorder.record(held_out("C0002", T0 + timedelta(days=3)))
    recorder.flush()
    # Only the universal control group enters the table; an experiment's control does not.
    assert members(engine) == {"C0002": (date(2026, 6, 1), None, 0.05)}
    stored = exposures(engine)
    assert stored["C0002@2026-06-01"] == ("C0002", "control", "P2|P1", "api")
    assert stored["C0003@2026-06-01#e-1"] == ("C0003", "control", "P1", "api")


def test_database_down_spools_then_replay_writes_each_exposure_once(
    engine: Engine, down_engine: Engine, tmp_path: Path
) -> None:
    spool = tmp_path / "spool" / "exposures"
    spooled: list[int] = []
    down = ExposureRecorder(down_engine, spool, share=0.05, on_spooled=spooled.append)
    batch = [treated("C0010"), held_out("C0011"), treated("NOBODY")]
    assert down.record_many(batch) == 3
    assert down.flush() == FlushResult(spooled=3)
    assert down.record(treated("C0012", products=("P4",)))
    assert down.flush() == FlushResult(spooled=1)
    assert spooled == [3, 1] and down.spool_depth() == 4
    assert [p.name.startswith("exposures-") for p in down.spool_files()] == [True]
    assert down.replay() == ExposureReplay(remaining_files=1)  # still down: left alone

    # A torn last line, as a crash mid-append leaves it, is quarantined, never half-read.
    with down.spool_files()[0].open("ab") as handle:
        handle.write(treated("C0013").to_json().encode()[:30])

    up = ExposureRecorder(engine, spool, share=0.05)
    assert up.replay() == ExposureReplay(stored=3, quarantined=1)
    assert up.spool_files() == [] and up.spool_depth() == 0
    assert sorted(exposures(engine)) == [
        "C0010@2026-06-01",
        "C0011@2026-06-01",
        "C0012@2026-06-01",
    ]
    assert members(engine) == {"C0011": (date(2026, 6, 1), None, 0.05)}
    with engine.connect() as conn:
        reasons = conn.execute(select(QuarantinedRow.entity, QuarantinedRow.reason)).all()
    assert reasons == [("exposures", "truncated spool line")]

    # The same exposures spooled again (a replica that also served them) store nothing new.
    again = ExposureRecorder(down_engine, spool, share=0.05)
    again.record_many(batch)
    again.flush()
    assert ExposureRecorder(engine, spool, share=0.05).replay() == ExposureReplay(duplicates=2)
    assert len(exposures(engine)) == 3


def test_the_flusher_thread_writes_in_the_background_and_once_more_on_stop(
    engine: Engine, tmp_path: Path
) -> None:
    recorder = ExposureRecorder(engine, tmp_path / "spool", share=0.05)
    stop = threading.Event()
    thread = start_flusher(recorder, 0.05, stop)
    recorder.record(treated("C0020"))
    deadline = time.monotonic() + 20
    while not exposures(engine) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(exposures(engine)) == ["C0020@2026-06-01"]
    stop.set()
    recorder.record(treated("C0021"))  # queued as it stops: written by its last flush
    thread.join(timeout=20)
    assert not thread.is_alive()
    assert sorted(exposures(engine)) == ["C0020@2026-06-01", "C0021@2026-06-01"]


def test_a_disabled_recorder_queues_nothing(engine: Engine, tmp_path: Path) -> None:
    recorder = ExposureRecorder(engine, tmp_path / "spool", share=0.05, enabled=False)
    assert not recorder.record(treated("C0030"))
    assert recorder.flush() == FlushResult()
    assert exposures(engine) == {}


def sync(
    engine: Engine, database_url: str, tmp_path: Path, share: float, today: date
) -> dict[str, Any]:
    """The `control_group` job through the catalogue, at `share`, as of `today`."""
    settings = Settings(
        database_url=database_url,
        var_dir=tmp_path / "var",
        control_group_share=share,
        registry_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    context = JobContext(engine, settings, None)
    return run_exclusive(context, "control_group", {"today": today.isoformat()}, str(uuid.uuid4()))


def test_a_changed_share_keeps_entered_on_and_records_who_left(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    salt = Settings().control_group_salt
    group = {
        s: {c for c, m in zip(CUSTOMERS, control_mask(CUSTOMERS, s, salt), strict=True) if m}
        for s in (0.1, 0.2, 0.3)
    }
    assert group[0.1] < group[0.2] < group[0.3] and len(group[0.1]) >= 20
    day1, day2, day3, day4 = (date(2026, 6, d) for d in (1, 2, 3, 4))

    # A customer served as held out before the first sync keeps that earlier entry.
    early = sorted(group[0.1])[0]
    recorder = ExposureRecorder(engine, tmp_path / "spool", share=0.2)
    recorder.record(held_out(early, datetime(2026, 5, 30, 12, tzinfo=UTC)))
    recorder.flush()

    counts = sync(engine, database_url, tmp_path, 0.2, day1)
    assert counts == {
        "members": len(group[0.2]),
        "entered": len(group[0.2]) - 1,
        "reentered": 0,
        "left": 0,
        "share": 0.2,
    }
    first = members(engine)
    assert set(first) == group[0.2]
    assert first[early] == (date(2026, 5, 30), None, 0.2)
    assert {first[c] for c in group[0.2] - {early}} == {(day1, None, 0.2)}

    # Growing: the members stay as they were; only the newcomers enter, today.
    sync(engine, database_url, tmp_path, 0.3, day2)
    grown = members(engine)
    assert {c: grown[c] for c in group[0.2]} == first
    assert {grown[c] for c in group[0.3] - group[0.2]} == {(day2, None, 0.3)}

    # Shrinking: those above the new share leave today; nobody's entry moves.
    counts = sync(engine, database_url, tmp_path, 0.1, day3)
    assert counts["left"] == len(group[0.3] - group[0.1]) and counts["entered"] == 0
    shrunk = members(engine)
    assert set(shrunk) == group[0.3]  # history kept: leavers keep their row
    assert store.current_members(engine) == group[0.1]
    for customer in group[0.3]:
        entered, left, share = shrunk[customer]
        assert entered == grown[customer][0] and share == grown[customer][2]
        assert left == (None if customer in group[0.1] else day3)
    assert store.is_member(engine, early)
    leaver = sorted(group[0.3] - group[0.1])[0]
    assert not store.is_member(engine, leaver)

    # Growing back: leavers re-enter with a new entry (left_on cleared); stayers untouched.
    counts = sync(engine, database_url, tmp_path, 0.2, day4)
    assert counts["reentered"] == len(group[0.2] - group[0.1]) and counts["left"] == 0
    back = members(engine)
    assert {back[c] for c in group[0.2] - group[0.1]} == {(day4, None, 0.2)}
    assert {c: back[c] for c in group[0.1]} == {c: shrunk[c] for c in group[0.1]}
    assert {back[c][1] for c in group[0.3] - group[0.2]} == {day3}

    # A customer gone from the customers table leaves the group too.
    with engine.begin() as conn:
        conn.execute(delete(Customer).where(Customer.customer_id == early))
    assert sync(engine, database_url, tmp_path, 0.2, day4 + timedelta(days=1))["left"] == 1
    with engine.connect() as conn:
        assert conn.execute(
            select(func.count()).select_from(ControlGroupMember)
        ).scalar_one() == len(group[0.3])


def test_replayed_old_exposure_does_not_undo_a_later_leave(engine: Engine, tmp_path: Path) -> None:
    customer = CUSTOMERS[0]
    with engine.begin() as conn:
        store.sync_control_group(conn, [customer], 0.1, date(2026, 6, 1))
        store.sync_control_group(conn, [], 0.0, date(2026, 6, 5))
    recorder = ExposureRecorder(engine, tmp_path / "spool", share=0.1)
    recorder.record(held_out(customer, datetime(2026, 6, 3, tzinfo=UTC)))  # spooled, replayed late
    recorder.flush()
    assert members(engine)[customer] == (date(2026, 6, 1), date(2026, 6, 5), 0.1)
    recorder.record(held_out(customer, datetime(2026, 6, 8, tzinfo=UTC)))  # held out again
    recorder.flush()
    assert members(engine)[customer] == (date(2026, 6, 8), None, 0.1)
    assert {e[3] for e in exposures(engine).values()} == {ExposureSource.API.value}
