"""Grandfather-father-son retention with a fake clock: exactly which backups are kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from nextoffer.ops.manifest import backup_time, new_backup_id
from nextoffer.ops.retention import RetentionPolicy, gfs_keep, months_before
from nextoffer.ops.wal import removable_wal

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)  # a Sunday, ISO week 2026-W11


def named(*moments: datetime) -> dict[str, datetime]:
    """Backups named by their UTC time, as the ids are."""
    return {m.astimezone(UTC).strftime("%Y-%m-%d %H:%M"): m for m in moments}


def at(day: str, hour: int = 0, minute: int = 0) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, minute=minute, tzinfo=UTC)


def test_no_backups_keeps_nothing() -> None:
    assert gfs_keep({}, NOW, RetentionPolicy()) == set()


def test_keep_all_tier_is_inclusive_at_its_boundary() -> None:
    backups = named(
        NOW - timedelta(hours=1),
        NOW - timedelta(hours=47),
        NOW - timedelta(hours=48),  # exactly keep_all_days ago: kept
        NOW - timedelta(hours=49),
        NOW - timedelta(days=10),
    )
    kept = gfs_keep(backups, NOW, RetentionPolicy(2, 0, 0))
    assert kept == {"2026-03-15 11:00", "2026-03-13 13:00", "2026-03-13 12:00"}


def test_daily_tier_keeps_the_newest_backup_of_each_utc_day() -> None:
    backups = named(
        at("2026-03-15", 6),
        at("2026-03-15", 0),
        at("2026-03-14", 23, 59),
        at("2026-03-14", 12),
        at("2026-03-09", 13),
        at("2026-03-08", 13),  # after the one-week cutoff (03-08 12:00): newest of its day
        at("2026-03-08", 11),  # before the cutoff
        at("2026-03-01", 18),
    )
    kept = gfs_keep(backups, NOW, RetentionPolicy(0, 1, 0))
    assert kept == {
        "2026-03-15 06:00",
        "2026-03-14 23:59",
        "2026-03-09 13:00",
        "2026-03-08 13:00",
    }


def test_weekly_tier_keeps_the_newest_backup_of_each_iso_week() -> None:
    backups = named(
        at("2026-03-15", 10),  # Sunday, W11
        at("2026-03-09", 10),  # Monday, W11
        at("2026-03-08", 10),  # Sunday, W10
        at("2026-03-07", 10),  # Saturday, W10
        at("2026-03-02", 0),  # Monday, W10
        at("2026-01-16", 9),  # W03, after the two-month cutoff (01-15 12:00)
        at("2026-01-15", 11),  # W03 too, but before the cutoff
        at("2025-12-31", 9),  # W01 of 2026 by ISO, long before the cutoff
    )
    kept = gfs_keep(backups, NOW, RetentionPolicy(0, 0, 2))
    assert kept == {"2026-03-15 10:00", "2026-03-08 10:00", "2026-01-16 09:00"}


def test_days_are_utc_days_whatever_the_offset_of_the_times_given() -> None:
    plus_two = timezone(timedelta(hours=2))
    backups = {
        "late": datetime(2026, 3, 15, 1, 0, tzinfo=plus_two),  # 03-14 23:00 UTC
        "early": datetime(2026, 3, 14, 22, 0, tzinfo=UTC),
        "today": datetime(2026, 3, 15, 3, 0, tzinfo=plus_two),  # 03-15 01:00 UTC
    }
    assert gfs_keep(backups, NOW, RetentionPolicy(0, 1, 0)) == {"late", "today"}


def test_the_newest_backup_is_kept_however_old() -> None:
    old = named(at("2024-01-01", 0), at("2024-01-02", 0))
    assert gfs_keep(old, NOW, RetentionPolicy()) == {"2024-01-02 00:00"}
    assert gfs_keep(old, NOW, RetentionPolicy(0, 0, 0)) == {"2024-01-02 00:00"}


def test_seed_policy_on_a_year_of_six_hourly_backups() -> None:
    """7 days of everything, 4 weeks of dailies, 12 months of weeklies, nothing older."""
    start = at("2025-01-01", 0)
    backups = {}
    moment = start
    while moment <= NOW:
        backups[moment.isoformat()] = moment
        moment += timedelta(hours=6)
    kept = {backups[name] for name in gfs_keep(backups, NOW, RetentionPolicy(7, 4, 12))}

    week_ago = NOW - timedelta(days=7)
    four_weeks_ago = NOW - timedelta(weeks=4)
    year_ago = at("2025-03-15", 12)
    recent = {m for m in backups.values() if m >= week_ago}
    assert recent <= kept
    assert len(recent) == 7 * 4 + 1  # 12:00 seven days ago through 12:00 today

    # Between one and four weeks: the 18:00 backup of each day (the newest), nothing else.
    daily = {m for m in kept if four_weeks_ago <= m < week_ago}
    assert daily == {at("2026-02-15", 18) + timedelta(days=d) for d in range(21)}
    # Between four weeks and twelve months: the Sunday 18:00 of each ISO week, and the
    # newest backup inside the window of the week the cutoff falls in.
    weekly = {m for m in kept if m < four_weeks_ago}
    assert all(m >= year_ago for m in weekly)
    sundays = {m for m in weekly if m.weekday() == 6 and m.hour == 18}
    assert weekly - sundays == set()
    assert len(sundays) == len({m.isocalendar()[:2] for m in sundays})
    first_sunday = at("2025-03-16", 18)
    assert min(sundays) == first_sunday
    assert max(sundays) == at("2026-02-08", 18)
    assert len(sundays) == (at("2026-02-08", 18) - first_sunday).days // 7 + 1
    assert len(kept) == len(recent) + len(daily) + len(weekly)


def test_pruning_every_day_keeps_what_one_prune_at_the_end_keeps() -> None:
    """GFS is stable: deleting what today's prune drops never changes tomorrow's choice."""
    policy = RetentionPolicy(3, 2, 2)
    start = at("2026-01-01", 0)
    survivors: dict[str, datetime] = {}
    every: dict[str, datetime] = {}
    for step in range(4 * 75):  # 75 days of backups every 6 hours, pruned after each day
        moment = start + timedelta(hours=6 * step)
        survivors[moment.isoformat()] = every[moment.isoformat()] = moment
        if moment.hour == 18:
            keep = gfs_keep(survivors, moment, policy)
            survivors = {k: v for k, v in survivors.items() if k in keep}
    end = start + timedelta(hours=6 * (4 * 75 - 1))
    assert set(survivors) == gfs_keep(every, end, policy)
    assert len(survivors) < len(every) / 5


@pytest.mark.parametrize(
    ("moment", "months", "expected"),
    [
        (datetime(2026, 3, 31, 8, tzinfo=UTC), 1, datetime(2026, 2, 28, 8, tzinfo=UTC)),
        (datetime(2024, 3, 31, 8, tzinfo=UTC), 1, datetime(2024, 2, 29, 8, tzinfo=UTC)),
        (datetime(2026, 1, 15, 8, tzinfo=UTC), 2, datetime(2025, 11, 15, 8, tzinfo=UTC)),
        (datetime(2026, 3, 15, 8, tzinfo=UTC), 12, datetime(2025, 3, 15, 8, tzinfo=UTC)),
        (datetime(2026, 12, 31, 8, tzinfo=UTC), 0, datetime(2026, 12, 31, 8, tzinfo=UTC)),
    ],
)
def test_months_before_counts_calendar_months(
    moment: datetime, months: int, expected: datetime
) -> None:
    assert months_before(moment, months) == expected


def test_backup_ids_sort_like_their_times_and_give_them_back() -> None:
    moments = [
        datetime(2026, 3, 15, 12, 0, 0, 999_999, tzinfo=UTC),
        datetime(2026, 3, 15, 12, 0, 1, 0, tzinfo=UTC),
        datetime(2026, 3, 15, 14, 0, 0, 500_000, tzinfo=timezone(timedelta(hours=2))),
    ]
    ids = [new_backup_id(m) for m in moments]
    assert ids == ["20260315T120000.999Z", "20260315T120001.000Z", "20260315T120000.500Z"]
    assert sorted(ids, key=backup_time) == sorted(ids)
    assert backup_time(ids[0]) == datetime(2026, 3, 15, 12, 0, 0, 999_000, tzinfo=UTC)


def test_wal_older_than_the_oldest_kept_base_backup_goes_history_files_stay() -> None:
    archived = [
        "000000010000000000000003",
        "000000010000000000000004",
        "000000010000000000000004.00000028.backup",
        "000000010000000000000005",
        "00000002.history",
        "000000020000000000000004",
        "000000020000000000000006.partial",
    ]
    assert removable_wal(archived, "000000010000000000000005") == [
        "000000010000000000000003",
        "000000010000000000000004",
        "000000010000000000000004.00000028.backup",
        "000000020000000000000004",
    ]
