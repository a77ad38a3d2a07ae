"""The `retention` job: events, transactions and contact history older than their setting go.

A retention shorter than a window that reads those rows would quietly break what reads
them, so the job refuses to start on one, naming the window: the training history
(uplift models learn from a year of exposures and their outcomes), the impact job's
period and outcome window, and the contact cap's window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from nextoffer.config import Settings
from nextoffer.domain.errors import ConfigError
from nextoffer.ops.retention import months_before
from nextoffer.store import Engine
from nextoffer.store.maintenance import purge_older

TRAINING_HISTORY_DAYS = 365
"""How far back training reads transactions and events (pipelines.train_uplift.HISTORY_DAYS)."""


@dataclass(frozen=True)
class Window:
    """A span of history something reads: what, and how many days."""

    what: str
    days: int


def windows(settings: Settings) -> dict[str, list[Window]]:
    """The windows each retained table must outlast, by table."""
    impact = Window(
        f"the impact window (impact_period_days {settings.impact_period_days} + "
        f"impact_window_days {settings.impact_window_days})",
        settings.impact_period_days + settings.impact_window_days,
    )
    training = Window("the training window", TRAINING_HISTORY_DAYS)
    cap = Window(
        f"the contact-cap window (contact_window_days {settings.contact_window_days})",
        settings.contact_window_days,
    )
    return {
        "events": [training, impact],
        "transactions": [training, impact],
        "contact_history": [cap],
    }


def months_setting(settings: Settings) -> dict[str, int]:
    """Each retained table's retention in months (0: forever)."""
    return {
        "events": settings.retention_events_months,
        "transactions": settings.retention_transactions_months,
        "contact_history": settings.retention_contact_history_months,
    }


def needed_months(days: int) -> int:
    """The fewest whole months that always span `days` days."""
    return math.ceil(days * 12 / 365)


def refusals(settings: Settings) -> list[str]:
    """Why the retention settings cannot be applied; empty when they can."""
    problems = []
    for table, months in months_setting(settings).items():
        if months == 0:
            continue
        for window in windows(settings)[table]:
            need = needed_months(window.days)
            if months < need:
                problems.append(
                    f"NEXTOFFER_RETENTION_{table.upper()}_MONTHS={months} is shorter than "
                    f"{window.what}: {window.days} days need at least {need} months "
                    "(or 0, keep forever)"
                )
    return problems


@dataclass
class RetentionResult:
    """Rows purged (or, on a dry run, that would be) per table, and the cut-off times."""

    cutoffs: dict[str, datetime] = field(default_factory=dict)
    purged: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False

    def counts(self) -> dict[str, Any]:
        """The numbers the job run records."""
        return {
            **{f"{table}_purged": count for table, count in self.purged.items()},
            **{f"{table}_before": at.isoformat() for table, at in self.cutoffs.items()},
            "dry_run": self.dry_run,
        }

    def summary(self) -> str:
        """One line for the CLI and logs."""
        verb = "would purge" if self.dry_run else "purged"
        if not self.cutoffs:
            return "retention: every retention setting is 0 (keep forever); nothing purged"
        parts = [
            f"{table} {self.purged.get(table, 0):,} (before {cutoff:%Y-%m-%d})"
            for table, cutoff in self.cutoffs.items()
        ]
        return f"retention: {verb} " + ", ".join(parts)


def purge(
    engine: Engine, settings: Settings, now: datetime, *, dry_run: bool = False
) -> RetentionResult:
    """Apply the retention settings at `now`; ConfigError, before deleting anything, on refusal."""
    problems = refusals(settings)
    if problems:
        raise ConfigError("retention refused: " + "; ".join(problems))
    result = RetentionResult(dry_run=dry_run)
    for table, months in months_setting(settings).items():
        if months == 0:
            continue
        # Never inside a window, even in a month shorter than average.
        longest = max(w.days for w in windows(settings)[table])
        cutoff = min(months_before(now, months), now - timedelta(days=longest))
        result.cutoffs[table] = cutoff
        result.purged[table] = purge_older(engine, table, cutoff, dry_run=dry_run)
    return result
