"""The Celery beat schedule from settings and the catalogue: each scheduled job and its chain."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from celery.schedules import crontab

from nextoffer.config import Settings
from nextoffer.domain.errors import ConfigError
from nextoffer.jobs.broker import RUN_SCHEDULED
from nextoffer.jobs.catalogue import JOBS


@dataclass(frozen=True)
class Entry:
    """One schedule entry: the jobs it runs in order and the setting holding its crontab."""

    name: str
    jobs: tuple[str, ...]
    setting: str


# Each entry's jobs run as a Celery chain, one after the other, each on its own queue; a
# failure or a refused start stops the rest (a failed ETL must not be followed by a
# precompute of stale data). The catalogue says which job starts which chain, and when.
ENTRIES = tuple(
    Entry(spec.schedule.entry, (spec.name, *spec.schedule.then), spec.schedule.setting)
    for spec in JOBS.values()
    if spec.schedule is not None
)


def parse_crontab(expression: str, setting: str) -> crontab:
    """A Celery crontab from five fields (minute hour day-of-month month day-of-week), UTC."""
    fields = expression.split()
    if len(fields) != 5:
        raise ConfigError(
            f"NEXTOFFER_{setting.upper()}: expected 5 crontab fields "
            f"(minute hour day-of-month month day-of-week), got {expression!r}"
        )
    minute, hour, day_of_month, month, day_of_week = fields
    try:
        schedule = crontab(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month,
            day_of_week=day_of_week,
        )
    except ValueError as exc:
        raise ConfigError(f"NEXTOFFER_{setting.upper()}: {expression!r}: {exc}") from None
    return schedule


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Celery's `beat_schedule` for these settings; empty when Airflow is in charge."""
    if settings.scheduler != "celery":
        return {}
    return {
        entry.name: {
            "task": RUN_SCHEDULED,
            "schedule": parse_crontab(str(getattr(settings, entry.setting)), entry.setting),
            "args": [entry.name, list(entry.jobs)],
            # A firing that waits longer than an hour (beat or broker down) is dropped: the
            # next one comes, and two nightly ETLs back to back help no one.
            "options": {"queue": "ops", "expires": 3600},
        }
        for entry in ENTRIES
    }
