"""Grandfather-father-son retention: which backups to keep, given their times and now.

The seed's policy, with its three spans configurable: every backup of the last
`keep_all_days` days; the newest backup of each UTC day for `keep_daily_weeks` weeks; the
newest of each ISO week for `keep_weekly_months` calendar months. The newest backup is kept
whatever its age, so pruning never leaves nothing to restore. Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta


@dataclass(frozen=True)
class RetentionPolicy:
    """How long each tier lasts; 0 turns a tier off."""

    keep_all_days: int = 7
    keep_daily_weeks: int = 4
    keep_weekly_months: int = 12


def months_before(moment: datetime, months: int) -> datetime:
    """The same day and time `months` calendar months earlier (the last day when shorter)."""
    index = moment.year * 12 + (moment.month - 1) - months
    year, month = divmod(index, 12)
    month += 1
    next_month = date(year + (month == 12), month % 12 + 1, 1)
    last_day = (next_month - timedelta(days=1)).day
    return moment.replace(year=year, month=month, day=min(moment.day, last_day))


def gfs_keep(times: Mapping[str, datetime], now: datetime, policy: RetentionPolicy) -> set[str]:
    """The ids of `times` (id → backup time) to keep at `now`; every other id may go."""
    if not times:
        return set()
    utc = {name: moment.astimezone(UTC) for name, moment in times.items()}
    now = now.astimezone(UTC)
    keep = {max(utc, key=lambda name: (utc[name], name))}

    all_since = now - timedelta(days=policy.keep_all_days)
    if policy.keep_all_days > 0:
        keep |= {name for name, moment in utc.items() if moment >= all_since}

    def newest_per(since: datetime, bucket: Callable[[datetime], Hashable]) -> set[str]:
        best: dict[Hashable, str] = {}
        for name, moment in utc.items():
            if moment < since:
                continue
            slot = bucket(moment)
            current = best.get(slot)
            if current is None or (moment, name) > (utc[current], current):
                best[slot] = name
        return set(best.values())

    if policy.keep_daily_weeks > 0:
        keep |= newest_per(now - timedelta(weeks=policy.keep_daily_weeks), lambda m: m.date())
    if policy.keep_weekly_months > 0:
        keep |= newest_per(
            months_before(now, policy.keep_weekly_months), lambda m: m.isocalendar()[:2]
        )
    return keep
