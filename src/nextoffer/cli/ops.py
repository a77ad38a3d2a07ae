"""Operator commands in the spirit of the seed scripts: doctor, bootstrap, cleanup, cache, DR."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from nextoffer.cli.common import console, err_console, handles_errors, load_settings, open_platform
from nextoffer.config import Settings
from nextoffer.domain.errors import ConfigError
from nextoffer.store.engine import wait_for_database

if TYPE_CHECKING:
    from nextoffer.jobs.context import JobContext

cache_app = typer.Typer(help="The cache: rebuild it from the database.")
dr_app = typer.Typer(help="Disaster recovery: rehearse a restore and measure RTO and RPO.")


def register(app: typer.Typer) -> None:
    """Add these commands to the `nextoffer` app."""
    app.command()(doctor)
    app.command()(bootstrap)
    app.command()(cleanup)
    app.add_typer(cache_app, name="cache")
    app.add_typer(dr_app, name="dr")


@handles_errors
def doctor() -> None:
    """Check every dependency (database, schema, cache, broker, registry, stores, disk).

    One line each; exits 1 naming every setting that points at something dead.
    """
    from nextoffer.ops.doctor import run_checks

    settings = load_settings()
    checks = run_checks(settings)
    for check in checks:
        mark = "[green]ok[/green]  " if check.ok else "[red]DEAD[/red]"
        if check.skipped:
            mark = "[dim]skip[/dim]"
        where = "" if check.ok else f"{check.setting}: "
        took = f"[dim]({check.seconds * 1000:.0f} ms)[/dim]"
        console.print(
            f"{mark} {check.name:<15} {where}{check.detail}  {took}",
            highlight=False,
            soft_wrap=True,
        )
    dead = [c for c in checks if not c.ok]
    if dead:
        settings_at_fault = sorted({c.setting for c in dead})
        err_console.print(
            f"[red]doctor:[/red] {len(dead)} of {len(checks)} checks failed — check "
            + ", ".join(settings_at_fault),
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)
    console.print(f"doctor: all {len(checks)} checks passed", highlight=False)


@handles_errors
def bootstrap(
    admin_name: Annotated[
        str, typer.Option(help="name of the first admin key")
    ] = "bootstrap admin",
) -> None:
    """Create the database and buckets, migrate, and create the first admin key.

    Safe to run on every deploy (the one-shot service before the API): it leaves alone
    whatever exists. The admin key is printed once, on stdout, only when it is created.
    """
    from nextoffer.ops.bootstrap import bootstrap as run_bootstrap

    result = run_bootstrap(load_settings(), admin_name)
    for step in result.steps:
        err_console.print(f"bootstrap: {step}", highlight=False)
    if not result.steps:
        err_console.print("bootstrap: nothing to do", highlight=False)
    if result.admin_key is not None:
        err_console.print("admin key (shown once):", highlight=False)
        typer.echo(result.admin_key)


@handles_errors
def cleanup(
    runs_days: Annotated[int, typer.Option(min=1, help="keep run records this many days")] = 90,
    quarantine_days: Annotated[
        int, typer.Option(min=1, help="keep quarantined rows and files this many days")
    ] = 30,
    dry_run: Annotated[bool, typer.Option(help="count only, remove nothing")] = False,
) -> None:
    """Remove old run records, old quarantine rows and files, and unreachable cached offers."""
    from nextoffer.ops.cleanup import cleanup as run_cleanup
    from nextoffer.store.runs import utcnow

    settings = load_settings()
    platform = open_platform(settings)
    engine, cache = platform.engine, platform.cache
    wait_for_database(engine, settings.db_wait_timeout_s)
    state = platform.services.state
    state.refresh()
    try:
        result = run_cleanup(
            engine,
            cache,
            settings.quarantine_dir,
            now=utcnow(),
            keep_runs_days=runs_days,
            keep_quarantine_days=quarantine_days,
            current_stamp=state.stamp if state.database_ok else None,
            dry_run=dry_run,
        )
    finally:
        cache.close()
        engine.dispose()
    verb = "would remove" if dry_run else "removed"
    console.print(
        f"cleanup: {verb} {result.runs:,} run records, {result.quarantined_rows:,} quarantined "
        f"rows, {result.quarantine_files:,} quarantine files, {result.cache_entries:,} stale "
        "cached answers",
        highlight=False,
    )


def _context(settings: Settings) -> JobContext:
    platform = open_platform(settings)
    wait_for_database(platform.engine, settings.db_wait_timeout_s)
    return platform.job_context()


@cache_app.command("rebuild")
@handles_errors
def cache_rebuild() -> None:
    """Refill the cache (NEXTOFFER_CACHE_URL) from the database: answers, segments, popular."""
    from nextoffer.jobs.runner import run_exclusive

    settings = load_settings()
    if settings.cache_url.startswith("memory://"):
        raise ConfigError(
            "NEXTOFFER_CACHE_URL is memory://: each API process fills its own cache; "
            "a rebuild is for a shared Redis cache"
        )
    context = _context(settings)
    with err_console.status("rebuilding the cache"):
        counts = run_exclusive(context, "cache_rebuild")
    console.print(
        f"cache rebuild: {counts['offers']:,} offer answers, {counts['segments']:,} segments, "
        f"{counts['popular_lists']:,} popular lists in {counts['seconds']:.1f} s",
        highlight=False,
    )


@dr_app.command("drill")
@handles_errors
def dr_drill(
    backup_id: Annotated[
        str | None, typer.Argument(help="backup to drill (default: the newest)")
    ] = None,
    cache_url: Annotated[
        str, typer.Option(help="scratch cache to rebuild (default: in-process memory)")
    ] = "",
    keep: Annotated[bool, typer.Option(help="keep the scratch database afterwards")] = False,
) -> None:
    """Restore a backup into a scratch database, rebuild a cache, serve one answer; RTO and RPO.

    Touches nothing live. Exits 1 when the seed's targets (RTO < 15 min, RPO < 1 h) are missed.
    """
    from nextoffer.jobs.calls import run_drill
    from nextoffer.ops.drill import RPO_TARGET_S, RTO_TARGET_S

    settings = load_settings()
    if cache_url and cache_url == settings.cache_url:
        raise ConfigError("--cache-url must be a scratch cache, not NEXTOFFER_CACHE_URL")
    with err_console.status("drilling a recovery"):
        result = run_drill(settings, backup_id=backup_id, cache_url=cache_url, keep=keep)

    def verdict(met: bool) -> str:
        return "[green]met[/green]" if met else "[red]MISSED[/red]"

    console.print(
        f"dr drill: backup {result.backup_id} · {result.rows:,} rows · "
        f"{result.cached_answers:,} answers cached\n"
        f"  restore {result.restore_s:.1f} s + cache rebuild {result.cache_rebuild_s:.1f} s + "
        f"first answer {result.smoke_s * 1000:.0f} ms ({result.smoke_offers} offers for "
        f"{result.smoke_customer})\n"
        f"  RTO {result.rto_s:.1f} s (target {RTO_TARGET_S // 60} min: {verdict(result.rto_met)})\n"
        f"  RPO {result.rpo_s / 60:.1f} min = age of the backup "
        f"(target {RPO_TARGET_S // 60} min: {verdict(result.rpo_met)})",
        highlight=False,
    )
    if not (result.rto_met and result.rpo_met):
        raise typer.Exit(1)
