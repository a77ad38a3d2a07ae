"""`nextoffer etl`: the nightly ETL from NEXTOFFER_INGEST_SOURCE, and the ledger of loaded files."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from nextoffer.cli.common import console, err_console, handles_errors, load_settings, open_platform
from nextoffer.store.engine import wait_for_database

etl_app = typer.Typer(
    help="The nightly ETL (new files → load → features → precompute) and its ledger.",
    no_args_is_help=True,
)


# Where the nightly reads its new files from, when not NEXTOFFER_INGEST_SOURCE.
Source = Annotated[
    str | None,
    typer.Option(help="folder or s3://bucket/prefix (default: NEXTOFFER_INGEST_SOURCE)"),
]


@etl_app.command("nightly")
@handles_errors
def nightly(source: Source = None) -> None:
    """Load the source's new files, then recompute features and precomputed offers.

    Files the ledger already has (same place, same SHA-256) are skipped, so a night with
    nothing new only lists the source. This is what the scheduler in charge
    (NEXTOFFER_SCHEDULER) runs at NEXTOFFER_ETL_CRON; run by hand, it always runs.
    """
    from nextoffer.jobs.calls import run_nightly_etl

    settings = load_settings()
    platform = open_platform(settings)
    wait_for_database(platform.engine, settings.db_wait_timeout_s)
    with err_console.status("nightly ETL"):
        result = run_nightly_etl(platform.engine, settings, source, registry=platform.registry)
    if result.ingest is not None and result.ingest.rows_quarantined:
        console.print(f"quarantined rows: {settings.quarantine_dir}/ and table `quarantine`")
    console.print(result.summary(), highlight=False, soft_wrap=True)


@etl_app.command("ledger")
@handles_errors
def ledger(
    limit: Annotated[int, typer.Option(min=1, help="most recent files to show")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """The files loaded most recently: source, content hash, run and row counts."""
    from nextoffer.store.ledger import list_entries

    settings = load_settings()
    engine = open_platform(settings).engine
    wait_for_database(engine, settings.db_wait_timeout_s)
    entries = list_entries(engine, limit=limit)
    if as_json:
        rows = [
            {
                **vars(e),
                "loaded_at": None if e.loaded_at is None else e.loaded_at.isoformat(),
            }
            for e in entries
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    if not entries:
        console.print("ledger: no files loaded yet")
        return
    table = Table("loaded (UTC)", "entity", "source", "sha256", "read", "loaded", "quarantined")
    table.box = None
    for e in entries:
        when = "" if e.loaded_at is None else e.loaded_at.strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(
            when,
            e.entity,
            e.uri,
            e.sha256[:12],
            f"{e.rows_read:,}",
            f"{e.rows_loaded:,}",
            f"{e.rows_quarantined:,}",
        )
    # Whole URIs and hashes even when piped (80 columns): they are what one copies from here.
    wide = console.options.update_width(max(console.width, 1_000))
    width = max(console.width, console.measure(table, options=wide).maximum)
    Console(width=width, highlight=False).print(table)
