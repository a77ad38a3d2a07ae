"""Impact: what the offers caused, treated customers against the universal control group."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter
from starlette.responses import Response

from nextoffer.domain.impact import Difference, GroupImpact
from nextoffer.usecases.impact import find_impact
from nextoffer.web.console import PageDep

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class DifferenceView:
    """A difference as the page shows it: the estimate and interval, formatted, and raw."""

    metric: str
    label: str
    text: str
    interval: str
    verdict: str
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    direction: str
    """`up`, `down` or empty: whether the interval lies wholly above or below zero."""


def points(value: float) -> str:
    """A difference of rates in percentage points: 0.0123 → '+1.2 pts'."""
    return f"{value * 100:+.1f}\u00a0pts"


def money(value: float) -> str:
    """A difference of money per customer: 1.5 → '+1.50'."""
    return f"{value:+,.2f}"


METRICS: tuple[tuple[str, str, Callable[[float], str]], ...] = (
    ("acquisition", "acquisition rate", points),
    ("margin", "margin per customer", money),
    ("churn", "churn rate", points),
)
"""(GroupImpact attribute, label, formatter) of each compared metric, in page order."""


def difference_view(
    label: str, difference: Difference, show: Callable[[float], str]
) -> DifferenceView:
    """The page's view of one difference."""
    estimate, low, high = difference.estimate, difference.ci_low, difference.ci_high
    text = "—" if estimate is None else show(estimate)
    interval = "" if low is None or high is None else f"{show(low)} to {show(high)}"
    direction = ""
    if difference.excludes_zero and low is not None:
        direction = "up" if low > 0 else "down"
    return DifferenceView(
        difference.metric,
        label,
        text,
        interval,
        difference.verdict,
        estimate,
        low,
        high,
        direction,
    )


def differences(group: GroupImpact) -> list[DifferenceView]:
    """The group's three differences, in page order."""
    return [difference_view(label, getattr(group, name), show) for name, label, show in METRICS]


@router.get("/impact")
def impact(page: PageDep) -> Response:
    """The latest impact run: overall and per segment; how to get one while there is none."""
    found = find_impact(page.services)
    settings = page.console.settings
    report = None if found is None else found.report
    return page.render(
        "impact.html",
        {
            "title": "Impact",
            "found": found,
            "report": report,
            "as_of": None if report is None else datetime.fromisoformat(report.as_of),
            "exposed_from": None if report is None else datetime.fromisoformat(report.exposed_from),
            "exposed_to": None if report is None else datetime.fromisoformat(report.exposed_to),
            "overall": None if report is None else differences(report.overall),
            "segments": []
            if report is None
            else [(group, differences(group)) for group in report.segments],
            "share": settings.control_group_share,
            "window_days": settings.impact_window_days,
            "period_days": settings.impact_period_days,
        },
    )
