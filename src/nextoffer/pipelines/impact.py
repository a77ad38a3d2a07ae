"""The impact job: treated vs control over the exposures whose window has closed, stored."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nextoffer.config import Settings
from nextoffer.domain.errors import ConfigError
from nextoffer.domain.impact import (
    MIN_PER_ARM,
    Difference,
    ImpactPeriod,
    ImpactReport,
    impact_report,
)
from nextoffer.features.builder import data_as_of
from nextoffer.store import Engine
from nextoffer.store.impact import save_impact
from nextoffer.store.reads.impact import impact_outcomes, pending_customers, segment_names
from nextoffer.store.runs import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImpactRunResult:
    """One impact run: its id, what it compared, and the stored report."""

    run_id: str
    report: ImpactReport
    seconds: float

    def counts(self) -> dict[str, Any]:
        """The run's counts, as its job records them in `job_runs`."""
        overall = self.report.overall
        return {
            "treated": overall.treated.customers,
            "control": overall.control.customers,
            "pending": self.report.pending_customers,
            "segments": len(self.report.segments),
            "as_of": self.report.as_of,
        }

    def summary(self) -> str:
        """The one-line summary printed (and logged) at the end of a run."""
        report, overall = self.report, self.report.overall
        head = (
            f"impact: {overall.treated.customers:,} treated vs {overall.control.customers:,} "
            f"control customers first exposed {report.exposed_from[:10]} to "
            f"{report.exposed_to[:10]}, {report.window_days}-day window"
        )
        if not overall.enough_data:
            return f"{head} · {overall.acquisition.verdict} · {self.seconds:.1f} s"
        parts = [
            head,
            _brief("acquisition", overall.acquisition, _points),
            _brief("margin per customer", overall.margin, lambda v: f"{v:+,.2f}"),
            _brief("churn", overall.churn, _points),
        ]
        return " · ".join([*parts, f"{self.seconds:.1f} s"])


def run_impact(
    engine: Engine,
    settings: Settings,
    as_of: datetime | None = None,
    *,
    clock: Callable[[], datetime] = utcnow,
    run_id: str | None = None,
    min_per_arm: int = MIN_PER_ARM,
) -> ImpactRunResult:
    """Compare treated and control customers first exposed in the period, and store it.

    `as_of` (default: the data's clock, as the features job measures: midnight after the
    newest transaction or event, at most now) ends every window compared; the period is
    NEXTOFFER_IMPACT_PERIOD_DAYS of first exposures before it, less the last
    NEXTOFFER_IMPACT_WINDOW_DAYS, whose outcomes are not all in yet.
    """
    started = time.perf_counter()
    now = clock()
    if settings.impact_period_days <= settings.impact_window_days:
        raise ConfigError(
            f"NEXTOFFER_IMPACT_PERIOD_DAYS ({settings.impact_period_days}) must be longer than "
            f"NEXTOFFER_IMPACT_WINDOW_DAYS ({settings.impact_window_days}): only exposures "
            "whose window has closed are compared"
        )
    with engine.connect() as conn:
        as_of = as_of or data_as_of(conn, now)
        period = ImpactPeriod(as_of, settings.impact_window_days, settings.impact_period_days)
        outcomes = impact_outcomes(conn, period)
        report = impact_report(
            outcomes,
            period,
            now,
            segment_names=segment_names(conn),
            pending_customers=pending_customers(conn, period),
            min_per_arm=min_per_arm,
        )
    result = ImpactRunResult(run_id or str(uuid.uuid4()), report, 0.0)
    save_impact(engine, result.run_id, now, report)
    result = ImpactRunResult(result.run_id, report, time.perf_counter() - started)
    log.info("%s", result.summary(), extra={"counts": result.counts()})
    return result


def _points(value: float) -> str:
    return f"{value * 100:+.1f} pts"


def _brief(name: str, difference: Difference, show: Callable[[float], str]) -> str:
    if difference.estimate is None:
        return f"{name}: —"
    if difference.ci_low is None or difference.ci_high is None:
        return f"{name} {show(difference.estimate)} (no interval)"
    return (
        f"{name} {show(difference.estimate)} "
        f"(95 % CI {show(difference.ci_low)} to {show(difference.ci_high)})"
    )
