"""The `nextoffer` command: every job and operator action, as thin calls into the pipelines."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from nextoffer.config import Settings
from nextoffer.domain.errors import ConfigError, NextOfferError
from nextoffer.observe.logs import configure_logging
from nextoffer.store import migrate
from nextoffer.store.engine import make_engine, safe_url, wait_for_database

console = Console()
err_console = Console(stderr=True)

app = typer.Typer(
    help=(
        "nextoffer: next-best offers, churn risk and segments for telecom customers.\n\n"
        "Settings come from NEXTOFFER_* environment variables (or NEXTOFFER_*_FILE for "
        "secrets); the defaults run everything embedded under ./var (SQLite, in-process "
        "cache, inline tasks)."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema: migrate up or down, show the current revision.")
app.add_typer(db_app, name="db")

F = TypeVar("F", bound=Callable[..., Any])


def handles_errors(func: F) -> F:
    """Turn a NextOfferError into one red line and exit code 1, never a stack trace."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except NextOfferError as exc:
            err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def load_settings() -> Settings:
    """Settings from the environment, with a readable message when one is invalid."""
    try:
        settings = Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigError(f"NEXTOFFER_{where.upper()}: {first['msg']}") from None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    configure_logging(settings.log_level, json_lines=settings.log_json)
    return settings


def _progress(*columns: Any) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        *columns,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )


@app.command()
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

    with _progress(MofNCompleteColumn()) as bar:
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
    engine = make_engine(settings.database_url)
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
    engine = make_engine(settings.database_url)
    wait_for_database(engine, settings.db_wait_timeout_s)
    migrate.downgrade(engine, revision)
    console.print(f"db: at revision {migrate.current_revision(engine) or 'base'}")


@db_app.command("current")
@handles_errors
def db_current() -> None:
    """Show the database's revision and whether it is the newest this version ships."""
    settings = load_settings()
    engine = make_engine(settings.database_url)
    wait_for_database(engine, settings.db_wait_timeout_s)
    current = migrate.current_revision(engine)
    head = migrate.head_revision()
    state = "up to date" if current == head else f"behind (newest is {head})"
    console.print(f"db: revision {current or 'none'} · {state}")


@app.command()
@handles_errors
def ingest(
    path: Annotated[Path, typer.Argument(help="folder of import files, or one file")],
) -> None:
    """Validate and load import files; bad rows go to quarantine with their reason.

    Files are recognised by name (products, customers, subscriptions, transactions,
    events, churn_labels; .csv, .csv.gz or .parquet) and loaded in dependency order.
    Re-running the same input changes nothing.
    """
    from nextoffer.pipelines.etl import run_ingest

    settings = load_settings()
    engine = make_engine(settings.database_url)
    wait_for_database(engine, settings.db_wait_timeout_s)
    with _progress(DownloadColumn()) as bar:
        task = bar.add_task("ingest", total=None)
        result = run_ingest(
            engine,
            settings,
            path,
            on_start=lambda files: bar.update(task, total=sum(f.size for f in files)),
            progress=lambda n: bar.advance(task, n),
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


@app.command()
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
    from nextoffer.pipelines.features import run_features

    settings = load_settings()
    engine = make_engine(settings.database_url)
    wait_for_database(engine, settings.db_wait_timeout_s)
    with err_console.status("computing features and segments"):
        result = run_features(engine, settings, as_of=_utc(as_of))
    table = Table("segment", "name", "customers", box=None)
    for segment in result.segments:
        table.add_row(str(segment.segment_id), segment.name, f"{segment.size:,}")
    console.print(table)
    console.print(result.summary(), soft_wrap=True)


@app.command()
@handles_errors
def quickstart(
    customers: Annotated[int, typer.Option(min=100, help="customers to generate")] = 20_000,
    seed: Annotated[int, typer.Option(help="random seed for the generated world")] = 42,
    data: Annotated[Path, typer.Option(help="where the generated files go")] = Path("var/data"),
) -> None:
    """The main job on the current settings: generate data, migrate, ingest, compute features."""
    started = time.perf_counter()
    generate(out=data, customers=customers, seed=seed)
    db_upgrade(revision="head", timeout=None)
    ingest(path=data)
    features(as_of=None)
    console.print(f"quickstart: done in {time.perf_counter() - started:.1f} s", highlight=False)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
