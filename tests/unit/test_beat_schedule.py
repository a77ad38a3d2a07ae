"""The beat schedule resolves to the seed's times, in UTC, and is idle when Airflow rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nextoffer.config import Settings
from nextoffer.domain.errors import ConfigError
from nextoffer.jobs.broker import route_task
from nextoffer.worker.app import make_celery
from nextoffer.worker.schedule import RUN_SCHEDULED, beat_schedule, parse_crontab

BROKER = "redis://127.0.0.1:6379/15"


def next_runs(entry: dict[str, object], start: datetime, count: int) -> list[datetime]:
    """The next `count` times an entry fires after `start`, as Celery beat computes them."""
    schedule = entry["schedule"]
    out: list[datetime] = []
    last = start
    for _ in range(count):
        now = last + timedelta(seconds=1)
        schedule.nowfun = lambda now=now: now  # type: ignore[attr-defined]
        fire = now + schedule.remaining_estimate(last)  # type: ignore[attr-defined]
        out.append(fire.astimezone(UTC))
        last = fire
    return out


def test_the_default_schedule_is_the_seeds() -> None:
    schedule = beat_schedule(Settings(broker_url=BROKER))
    # Monday 23 November 2026, 10:17 UTC.
    start = datetime(2026, 11, 23, 10, 17, tzinfo=UTC)
    assert next_runs(schedule["nightly-etl"], start, 2) == [
        datetime(2026, 11, 24, 2, 0, tzinfo=UTC),
        datetime(2026, 11, 25, 2, 0, tzinfo=UTC),
    ]
    assert next_runs(schedule["weekly-retraining"], start, 2) == [
        datetime(2026, 11, 29, 3, 0, tzinfo=UTC),  # Sunday
        datetime(2026, 12, 6, 3, 0, tzinfo=UTC),
    ]
    assert next_runs(schedule["backup"], start, 4) == [
        datetime(2026, 11, 23, 12, 0, tzinfo=UTC),
        datetime(2026, 11, 23, 18, 0, tzinfo=UTC),
        datetime(2026, 11, 24, 0, 0, tzinfo=UTC),
        datetime(2026, 11, 24, 6, 0, tzinfo=UTC),
    ]
    assert next_runs(schedule["backup-verify"], start, 1) == [
        datetime(2026, 11, 24, 4, 30, tzinfo=UTC)
    ]
    hourly = next_runs(schedule["kpi-refresh"], start, 3)
    assert [t.hour for t in hourly] == [11, 12, 13] and {t.minute for t in hourly} == {5}
    assert next_runs(schedule["fallback-refresh"], start, 1) == [
        datetime(2026, 11, 23, 10, 15, tzinfo=UTC) + timedelta(hours=1)
    ]
    assert next_runs(schedule["retention"], start, 1) == [datetime(2026, 11, 24, 5, 30, tzinfo=UTC)]


def test_entries_run_their_jobs_in_order_on_the_ops_queue() -> None:
    schedule = beat_schedule(Settings(broker_url=BROKER))
    assert schedule["nightly-etl"]["args"] == [
        "nightly-etl",
        ["etl", "precompute", "cache_rebuild", "impact"],
    ]
    assert schedule["weekly-retraining"]["args"][1] == ["training", "precompute", "cache_rebuild"]
    assert {entry["task"] for entry in schedule.values()} == {RUN_SCHEDULED}
    assert route_task(RUN_SCHEDULED, ["backup", ["backup"]], {}, {}) == {"queue": "ops"}


def test_the_app_carries_the_schedule_in_utc() -> None:
    app = make_celery(Settings(broker_url=BROKER, etl_cron="30 1 * * *"))
    assert app.conf.timezone == "UTC" and app.conf.enable_utc
    etl = app.conf.beat_schedule["nightly-etl"]["schedule"]
    assert etl.hour == {1} and etl.minute == {30}


def test_beat_is_idle_when_airflow_is_in_charge() -> None:
    assert beat_schedule(Settings(broker_url=BROKER, scheduler="airflow")) == {}


@pytest.mark.parametrize(
    ("expression", "message"),
    [("0 2 * *", "expected 5 crontab fields"), ("61 2 * * *", "61 2 \\* \\* \\*")],
)
def test_a_bad_crontab_names_its_setting(expression: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"NEXTOFFER_ETL_CRON: .*{message}"):
        parse_crontab(expression, "etl_cron")


def test_cache_and_broker_may_not_share_a_redis_database() -> None:
    with pytest.raises(ConfigError, match="same Redis database"):
        make_celery(Settings(broker_url="redis://r:6379/0", cache_url="redis://r:6379"))
    make_celery(Settings(broker_url="redis://r:6379/0", cache_url="redis://r:6379/1"))
    make_celery(Settings(broker_url="redis://broker:6379/0", cache_url="redis://cache:6379/0"))
