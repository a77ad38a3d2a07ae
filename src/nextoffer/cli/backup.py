"""`nextoffer backup`: create, list, restore, verify and prune backups; archive PostgreSQL WAL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from nextoffer.cli.common import console, err_console, handles_errors, load_settings
from nextoffer.domain.errors import ConfigError, NotFoundError

app = typer.Typer(
    help=(
        "Backups of the database, the model registry and recent model files to "
        "NEXTOFFER_BACKUP_URL (file:// or s3://); restore, verify, GFS pruning, and "
        "PostgreSQL WAL archiving for point-in-time recovery."
    ),
    no_args_is_help=True,
)


def _parse_time(text: str, option: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{option}: not an ISO time: {text!r}") from None
    if moment.tzinfo is None:
        raise ConfigError(f"{option}: give a time zone, e.g. {text}Z or {text}+02:00")
    return moment.astimezone(UTC)


@app.command("create")
@handles_errors
def create() -> None:
    """Back up the database, the registry and recent model files now.

    PostgreSQL with pg_dump (plus pg_basebackup when NEXTOFFER_WAL_ARCHIVE is on), SQLite
    with its online backup API; a manifest records sizes, SHA-256s, per-table row counts
    and checksums and the schema version.
    """
    from nextoffer.jobs.calls import create_backup

    settings = load_settings()
    with err_console.status("backing up"):
        manifest = create_backup(settings)
    if manifest.registry.note:
        err_console.print(f"note: {manifest.registry.note}", highlight=False, soft_wrap=True)
    console.print(manifest.summary(), highlight=False, soft_wrap=True)


@app.command("list")
@handles_errors
def list_() -> None:
    """Every complete backup, oldest first."""
    from nextoffer.ops.backup import list_backups

    settings = load_settings()
    manifests = list_backups(settings)
    if not manifests:
        console.print(f"backup: none yet in {settings.backup_url}", highlight=False)
        return
    table = Table(box=None, pad_edge=False)
    # The id is what people copy into `restore`: never shortened.
    table.add_column("id", no_wrap=True, min_width=20)
    for column in ("engine", "schema", "rows", "MiB", "champions", "PITR"):
        table.add_column(column, no_wrap=True)
    for m in manifests:
        table.add_row(
            m.backup_id,
            m.engine,
            m.schema_version or "",
            f"{m.rows:,}",
            f"{m.size / 2**20:.1f}",
            ", ".join(f"{k} {v}" for k, v in sorted(m.champions.items())),
            "yes" if m.physical else "",
        )
    console.print(table)


@app.command("restore")
@handles_errors
def restore(
    backup_id: Annotated[str | None, typer.Argument(help="backup id (default: newest)")] = None,
    to_time: Annotated[
        str | None,
        typer.Option(
            "--to-time",
            help="point-in-time recovery (PostgreSQL with WAL archiving): build a data "
            "directory recovered to this ISO time with a zone, e.g. 2026-01-05T10:30:00Z",
        ),
    ] = None,
    target_url: Annotated[
        str | None,
        typer.Option(
            "--target-url",
            help="database to restore into (default: NEXTOFFER_DATABASE_URL); with --to-time, "
            "the data directory to create",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="replace a database or registry that holds data")
    ] = False,
    no_registry: Annotated[
        bool,
        typer.Option("--no-registry", help="restore the database only, not the model registry"),
    ] = False,
) -> None:
    """Restore a backup into a database, or rebuild a cluster as of a time (--to-time).

    Refuses to replace a database that holds tables, or an existing registry, without
    --force. Row counts and checksums of the restored tables are compared with the
    manifest before the command says it is done.
    """
    from nextoffer.ops.restore import restore_backup

    settings = load_settings()
    moment = _parse_time(to_time, "--to-time") if to_time else None
    with err_console.status("restoring"):
        result = restore_backup(
            settings, backup_id, target_url, force, moment, registry=not no_registry
        )
    for note in result.notes:
        err_console.print(f"note: {note}", highlight=False, soft_wrap=True)
    console.print(result.summary(), highlight=False, soft_wrap=True)


@app.command("verify")
@handles_errors
def verify(
    backup_id: Annotated[str | None, typer.Argument(help="backup id (default: newest)")] = None,
) -> None:
    """Check a backup: its files' SHA-256, then a restore into a scratch database.

    Row counts and checksums of the restored tables are compared with the manifest; exit
    code 1 when anything differs.
    """
    from nextoffer.jobs.calls import verify_backup

    settings = load_settings()
    with err_console.status("verifying"):
        result = verify_backup(settings, backup_id)
    if not result.ok:
        for problem in result.problems:
            err_console.print(f"[red]problem:[/red] {problem}", highlight=False, soft_wrap=True)
        err_console.print(result.summary(), highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print(result.summary(), highlight=False, soft_wrap=True)


@app.command("prune")
@handles_errors
def prune(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="show what would be deleted; delete nothing")
    ] = False,
) -> None:
    """Delete backups that grandfather-father-son retention no longer keeps, and old WAL.

    Kept: every backup of NEXTOFFER_BACKUP_KEEP_ALL_DAYS days, the newest of each day for
    NEXTOFFER_BACKUP_KEEP_DAILY_WEEKS weeks, of each ISO week for
    NEXTOFFER_BACKUP_KEEP_WEEKLY_MONTHS months, and always the newest.
    """
    from nextoffer.jobs.calls import prune_backups

    settings = load_settings()
    result = prune_backups(settings, datetime.now(UTC), dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    for backup_id in result.deleted:
        console.print(f"  {verb} {backup_id}", highlight=False)
    console.print(result.summary(), highlight=False)


@app.command("wal-push")
@handles_errors
def wal_push(
    path: Annotated[Path, typer.Argument(help="%p: the WAL file, relative to the data directory")],
    name: Annotated[str, typer.Argument(help="%f: its file name")],
) -> None:
    """PostgreSQL's archive_command: `nextoffer backup wal-push %p %f`."""
    from nextoffer.ops.backup import backup_store
    from nextoffer.ops.wal import wal_push as push

    push(backup_store(load_settings()), path, name)


# restore_command's placeholders: the file PostgreSQL wants (%f), and where it wants it (%p).
WantedFile = Annotated[str, typer.Argument(help="%f: the WAL file wanted")]
WantedAt = Annotated[Path, typer.Argument(help="%p: where to put it")]


@app.command("wal-fetch")
@handles_errors
def wal_fetch(name: WantedFile, path: WantedAt) -> None:
    """PostgreSQL's restore_command: `nextoffer backup wal-fetch %f %p`.

    Exit code 1 when the file was never archived, which PostgreSQL takes as the end of
    the archive.
    """
    from nextoffer.ops.backup import backup_store
    from nextoffer.ops.wal import wal_fetch as fetch

    try:
        fetch(backup_store(load_settings()), name, path)
    except NotFoundError:
        # The normal end of recovery: PostgreSQL asks for the next file until one is missing.
        err_console.print(f"wal-fetch: {name} is not in the archive", highlight=False)
        raise typer.Exit(1) from None
