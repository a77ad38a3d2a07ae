"""Stored impact runs (`impact_results`): save one report per run, read back the latest."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Engine, insert, select

from nextoffer.domain.impact import ImpactReport
from nextoffer.store.reads._sql import Bind, as_date, connect
from nextoffer.store.schema import ImpactResult


@dataclass(frozen=True)
class StoredImpact:
    """One `impact_results` row with its report rebuilt."""

    run_id: str
    computed_at: datetime
    window_days: int
    period_start: date
    period_end: date
    report: ImpactReport


def save_impact(
    engine: Engine, run_id: str, computed_at: datetime, report: ImpactReport
) -> StoredImpact:
    """Store `report` as run `run_id`; the period's dates are its first exposures' days."""
    stored = StoredImpact(
        run_id=run_id,
        computed_at=computed_at,
        window_days=report.window_days,
        period_start=datetime.fromisoformat(report.exposed_from).date(),
        period_end=datetime.fromisoformat(report.exposed_to).date(),
        report=report,
    )
    with engine.begin() as conn:
        conn.execute(
            insert(ImpactResult).values(
                run_id=stored.run_id,
                computed_at=stored.computed_at,
                window_days=stored.window_days,
                period_start=stored.period_start,
                period_end=stored.period_end,
                report=report.to_json(),
            )
        )
    return stored


def latest_impact(bind: Bind) -> StoredImpact | None:
    """The newest stored run (by `computed_at`), or None before the first."""
    query = (
        select(
            ImpactResult.run_id,
            ImpactResult.computed_at,
            ImpactResult.window_days,
            ImpactResult.period_start,
            ImpactResult.period_end,
            ImpactResult.report,
        )
        .order_by(ImpactResult.computed_at.desc(), ImpactResult.run_id.desc())
        .limit(1)
    )
    with connect(bind) as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    return StoredImpact(
        run_id=str(row.run_id),
        computed_at=row.computed_at,
        window_days=int(row.window_days),
        period_start=as_date(row.period_start),
        period_end=as_date(row.period_end),
        report=ImpactReport.from_json(_payload(row.report)),
    )


def latest_impact_at(bind: Bind) -> datetime | None:
    """When the newest run was computed (the top of `ix_impact_results_computed_at`)."""
    with connect(bind) as conn:
        found: datetime | None = conn.execute(
            select(ImpactResult.computed_at).order_by(ImpactResult.computed_at.desc()).limit(1)
        ).scalar_one_or_none()
    return found


def _payload(value: Any) -> dict[str, Any]:
    # A JSON column comes back parsed; text (a driver without JSON support) is parsed here.
    parsed = json.loads(value) if isinstance(value, str | bytes) else value
    if not isinstance(parsed, dict):
        raise ValueError("impact_results.report is not a JSON object")
    return parsed
