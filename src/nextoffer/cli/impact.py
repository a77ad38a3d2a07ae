"""`nextoffer impact`: treated vs the control group over closed windows, stored and printed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from nextoffer.cli.common import (
    console,
    err_console,
    handles_errors,
    load_settings,
    open_platform,
    print_json,
)
from nextoffer.domain.impact import Difference, GroupImpact, ImpactReport
from nextoffer.store.engine import wait_for_database


@handles_errors
def impact(
    as_of: Annotated[
        datetime | None,
        typer.Option(help="end of the windows compared, UTC (default: the data's clock)"),
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="print the stored report as JSON")] = False,
) -> None:
    """Measure what the offers caused: treated customers against the control group.

    Each customer's first exposure in the last NEXTOFFER_IMPACT_PERIOD_DAYS whose
    NEXTOFFER_IMPACT_WINDOW_DAYS window has closed is compared: acquisition of the offered
    products, their margin net of offer cost, and churn, each as treated minus control
    with a 95 % interval, overall and per segment. The result is stored (the API's
    GET /v1/impact and the console's Impact page read it). The `impact` job.
    """
    from nextoffer.jobs.calls import run_impact

    settings = load_settings()
    engine = open_platform(settings).engine
    wait_for_database(engine, settings.db_wait_timeout_s)
    when = None if as_of is None else as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)
    with err_console.status("comparing treated and control customers"):
        result = run_impact(engine, settings, as_of=when)
    if json:
        print_json({"run_id": result.run_id, **result.report.to_json()})
        return
    console.print(impact_table(result.report))
    console.print(result.summary(), highlight=False, soft_wrap=True)


def impact_table(report: ImpactReport) -> Table:
    """One row per group (everyone, then each segment): arms' rates and the differences."""
    table = Table(
        title=f"Treated vs control, {report.window_days}-day window after the first exposure",
        box=None,
        title_justify="left",
    )
    for column in ("group", "treated", "control"):
        table.add_column(column, justify="left" if column == "group" else "right")
    for column in ("acquisition (95 % CI)", "margin / customer (95 % CI)", "churn (95 % CI)"):
        table.add_column(column, justify="right")
    for group in (report.overall, *report.segments):
        table.add_row(*_row(group))
    return table


def _row(group: GroupImpact) -> list[str]:
    t, c = group.treated, group.control
    cells = [group.label, f"{t.customers:,}", f"{c.customers:,}"]
    if not group.enough_data:
        return [*cells, "not enough data yet", "", ""]
    return [
        *cells,
        _cell(group.acquisition, _points),
        _cell(group.margin, lambda v: f"{v:+,.2f}"),
        _cell(group.churn, _points),
    ]


def _points(value: float) -> str:
    return f"{value * 100:+.1f} pts"


def _cell(difference: Difference, show: Callable[[float], str]) -> str:
    if difference.estimate is None:
        return "—"
    if difference.ci_low is None or difference.ci_high is None:
        return f"{show(difference.estimate)} (no interval)"
    return f"{show(difference.estimate)} ({show(difference.ci_low)} to {show(difference.ci_high)})"
