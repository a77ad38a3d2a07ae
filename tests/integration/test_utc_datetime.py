"""UtcDateTime: every time column reads back aware UTC on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import event, func, insert, select

from nextoffer.store.engine import make_engine
from nextoffer.store.migrate import upgrade
from nextoffer.store.schema import JobRun
from nextoffer.store.types import UtcDateTime, as_utc

TOKYO = timezone(timedelta(hours=9))


def test_as_utc_converts_aware_and_stamps_naive() -> None:
    moment = datetime(2024, 3, 1, 9, 30, tzinfo=TOKYO)
    assert as_utc(moment) == datetime(2024, 3, 1, 0, 30, tzinfo=UTC)
    assert as_utc(moment).tzinfo is UTC
    assert as_utc(datetime(2024, 3, 1, 0, 30)) == datetime(2024, 3, 1, 0, 30, tzinfo=UTC)
    # The DDL stays what the migrations build: TIMESTAMP WITH TIME ZONE.
    assert UtcDateTime().impl.timezone is True


def test_datetimes_round_trip_as_aware_utc(database_url: str) -> None:
    engine = make_engine(database_url)
    if engine.dialect.name == "postgresql":
        # A session zone other than UTC must not leak into what callers see.
        @event.listens_for(engine, "connect")
        def _tokyo(dbapi_connection: object, _record: object) -> None:
            cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
            cursor.execute("SET TIME ZONE 'Asia/Tokyo'")
            cursor.close()

    upgrade(engine)
    aware = datetime(2024, 3, 1, 9, 30, 15, 123456, tzinfo=TOKYO)
    naive = datetime(2024, 3, 2, 8, 0)
    with engine.begin() as conn:
        conn.execute(
            insert(JobRun),
            [
                {
                    "run_id": "a",
                    "job": "ingest",
                    "status": "ok",
                    "started_at": aware,
                    "finished_at": None,
                    "counts": {},
                },
                {
                    "run_id": "b",
                    "job": "ingest",
                    "status": "ok",
                    "started_at": naive,
                    "finished_at": naive + timedelta(minutes=5),
                    "counts": {},
                },
            ],
        )
    with engine.connect() as conn:
        rows = dict(conn.execute(select(JobRun.run_id, JobRun.started_at)).all())
        latest = conn.execute(select(func.max(JobRun.started_at))).scalar_one()
        finished = conn.execute(
            select(JobRun.finished_at).where(JobRun.finished_at.is_not(None))
        ).scalar_one()
        # A bound value is normalised too, so comparing with any zone finds the same rows.
        found = (
            conn.execute(
                select(JobRun.run_id).where(
                    JobRun.started_at == datetime(2024, 3, 1, 0, 30, 15, 123456, tzinfo=UTC)
                )
            )
            .scalars()
            .all()
        )
    engine.dispose()

    for value in (*rows.values(), latest, finished):
        assert value is not None
        assert value.tzinfo is not None and value.utcoffset() == timedelta(0)
    assert rows["a"] == aware
    assert rows["a"].hour == 0  # stored as UTC, not as Tokyo's wall time
    assert rows["b"] == naive.replace(tzinfo=UTC)
    assert latest == naive.replace(tzinfo=UTC)
    assert finished == datetime(2024, 3, 2, 8, 5, tzinfo=UTC)
    assert found == ["a"]
