"""`nextoffer generate`, `db`, `ingest` and `features`: the data a world is made of."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import DownloadColumn, MofNCompleteColumn
from rich.table import Table

from nextoffer.cli.common import (
    console,
    err_console,
    handles_errors,
    load_settings,
    open_platform,
    progress,
)
from nextoffer.store import migrate
from nextoffer.store.engine import safe_url, wait_for_database

db_app = typer.Typer(help="Database schema: migrate up or down, show the current revision.")
data_app = typer.Typer(
    help="What the data holds: a quality profile of every table.", no_args_is_help=True
)


@handles_errors
def generate(
    out: Annotated[Path, typer.Option(help="folder to write the import files into")] = Path(
        "var/data"
    ),
    customers: Annotated[int, typer.Option(min=1, help="number of customers")] = 20_000,
    seed: Annotated[int, typer.Option(help="random seed: same seed, same files")] = 42,
) -> None:
    """Generate a synthetic telco world (customers, catalogue, holdings, events, churn).

    The behaviour comes from a hidden structure written to OUT/truth/ so that models can
    be checked against it. Deterministic for a seed.
    """
    from nextoffer.synth.generator import generate_world

    with progress(MofNCompleteColumn()) as bar:
        task = bar.add_task("generate", total=customers)
        result = generate_world(
            out, customers, seed, progress=lambda done: bar.update(task, completed=done)
        )
    counts = " · ".join(f"{n:,} {name}" for name, n in result.rows.items())
    console.print(f"generate: {counts} → {result.out_dir} · {result.seconds:.1f} s", soft_wrap=True)


@db_app.command("upgrade")
@handles_errors
def db_upgrade(
    revision: Annotated[str, typer.Option(help="target revision")] = "head",
    timeout: Annotated[
        float | None, typer.Option(help="seconds to wait for the database (default: setting)")
    ] = None,
) -> None:
    """Wait for the database, then apply migrations up to REVISION (default: newest)."""
    settings = load_settings()
    engine = open_platform(settings).engine
    wait_for_database(engine, settings.db_wait_timeout_s if timeout is None else timeout)
    migrate.upgrade(engine, revision)
    console.print(
        f"db: {safe_url(engine.url)} at revision {migrate.current_revision(engine)}",
        highlight=False,
        soft_wrap=True,
    )


@db_app.command("downgrade")
@handles_errors
def db_downgrade(
    revision: Annotated[str, typer.Option(help="target revision; 'base' drops every table")] = "-1",
) -> None:
    """Revert migrations down to REVISION (default: one step)."""
    settings = load_settings()
    engine = open_platform(settings).engine
    wait_for_database(engine, settings.db_wait_timeout_s)
    migrate.downgrade(engine, revision)
    console.print(f"db: at revision {migrate.current_revision(engine) or 'base'}")


@db_app.command("current")
@handles_errors
def db_current() -> None:
    """Show the database's revision and whether it is the newest this version ships."""
    settings = load_settings()
    engine = open_platform(settings).engine
    wait_for_database(engine, settings.db_wait_timeout_s)
    current = migrate.current_revision(engine)
    head = migrate.head_revision()
    state = "up to date" if current == head else f"behind (newest is {head})"
    console.print(f"db: revision {current or 'none'} · {state}")


@handles_errors
def ingest(
    path: Annotated[
        str, typer.Argument(help="folder of import files, one file, or s3://bucket/prefix")
    ],
    new_only: Annotated[
        bool,
        typer.Option("--new-only", help="skip files the ledger has loaded (same place, content)"),
    ] = False,
    mapping: Annotated[
        Path | None,
        typer.Option(
            help="mapping file (YAML): read an operator's own export (renames, value maps, "
            "defaults, wide holdings, attributes); see docs/data-format.md"
        ),
    ] = None,
) -> None:
    """Validate and load import files; bad rows go to quarantine with their reason.

    Files are recognised by name (products, customers, subscriptions, transactions,
    events, churn_labels, exposures; .csv, .csv.gz or .parquet) and loaded in dependency order;
    with --mapping, also the files its entries name. Re-running the same input changes
    nothing. An s3:// prefix (S3 or MinIO at NEXTOFFER_S3_ENDPOINT_URL, credentials from
    AWS_*) is read like a folder.
    """
    from nextoffer.jobs.calls import run_ingest
    from nextoffer.jobs.context import Progress

    settings = load_settings()
    engine = open_platform(settings).engine
    wait_for_database(engine, settings.db_wait_timeout_s)
    with progress(DownloadColumn()) as bar:
        task = bar.add_task("ingest", total=None)
        # The `ingest` job: its lock (one at a time, whoever starts it) and its run record.
        result = run_ingest(
            engine,
            settings,
            path,
            new_only=new_only,
            mapping=mapping,
            progress=Progress(
                total=lambda size: bar.update(task, total=size),
                advance=lambda n: bar.advance(task, n),
            ),
        )
    table = Table("file", "entity", "read", "loaded", "quarantined", box=None)
    for f in result.files:
        table.add_row(
            Path(f.source).name,
            f.entity,
            f"{f.rows_read:,}",
            f"{f.rows_loaded:,}",
            f"{f.rows_quarantined:,}",
        )
    console.print(table)
    if result.rows_quarantined:
        console.print(f"quarantined rows: {settings.quarantine_dir}/ and table `quarantine`")
    console.print(result.summary(), soft_wrap=True)


@handles_errors
def features(
    as_of: Annotated[
        datetime | None,
        typer.Option(help="measure features at this UTC instant (default: the data's clock)"),
    ] = None,
) -> None:
    """Compute every customer's features and segment.

    Features: recency/frequency/monetary, ARPU, usage, tenure, holdings by category,
    service contacts and engagement. They replace the previous ones in one transaction.
    """
    from nextoffer.jobs.calls import run_features

    settings = load_settings()
    engine = open_platform(settings).engine
    wait_for_database(engine, settings.db_wait_timeout_s)
    with err_console.status("computing features and segments"):
        # The `features` job: its lock and its run record.
        result = run_features(engine, settings, as_of=_utc(as_of))
    table = Table("segment", "name", "customers", box=None)
    for segment in result.segments:
        table.add_row(str(segment.segment_id), segment.name, f"{segment.size:,}")
    console.print(table)
    console.print(result.summary(), soft_wrap=True)


@data_app.command("profile")
@handles_errors
def profile(
    out: Annotated[
        Path | None, typer.Option(help="write the Markdown to this file instead of printing it")
    ] = None,
) -> None:
    """Print a data-quality profile as Markdown (or write it to --out).

    Per table and column: the share of empty values, distinct values, range and top values;
    custom attributes the same way; quarantined rows by reason; and the share of
    subscriptions, transactions and events whose customer and product are known.
    """
    from nextoffer.usecases.data_profile import data_profile, to_markdown

    settings = load_settings()
    engine = open_platform(settings).engine
    wait_for_database(engine, settings.db_wait_timeout_s)
    with err_console.status("profiling the data"):
        text = to_markdown(data_profile(engine))
    if out is None:
        typer.echo(text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    console.print(f"data profile: {out}", highlight=False, soft_wrap=True)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
