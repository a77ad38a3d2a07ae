"""What every `nextoffer` subcommand shares: consoles, settings, errors, Celery, tables."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from nextoffer.config import Settings
from nextoffer.domain.errors import ConfigError, NextOfferError
from nextoffer.observe.logs import configure_logging

if TYPE_CHECKING:
    from nextoffer.platform import Platform
    from nextoffer.registry.mlflow_registry import ModelRegistry

console = Console()
err_console = Console(stderr=True)

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


def progress(*columns: Any) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        *columns,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )


def celery_app(settings: Settings) -> Any:
    """The worker's Celery app for NEXTOFFER_BROKER_URL; a ConfigError when it is unusable.

    The same checks as the API's (nextoffer.jobs.dispatch): Celery installed, a broker URL.
    """
    from nextoffer.jobs.dispatch import require_celery

    require_celery()
    from nextoffer.worker.app import make_celery

    return make_celery(settings)


def print_json(payload: Any) -> None:
    """PAYLOAD as indented JSON on standard output, unstyled."""
    import json

    typer.echo(json.dumps(payload, indent=2, default=str))


def metrics_table(title: str, rows: dict[str, dict[str, float]], columns: list[str]) -> Table:
    """One row per model, one right-aligned column per metric (`_at_` shown as `@`)."""
    table = Table(title=title, box=None, title_justify="left")
    table.add_column("model")
    for column in columns:
        table.add_column(column.replace("_at_", "@"), justify="right")
    for name, values in rows.items():
        table.add_row(name, *(_fmt(values.get(c)) for c in columns))
    return table


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def open_registry(settings: Settings) -> ModelRegistry:
    """The MLflow model registry the settings name (the command's platform's)."""
    return open_platform(settings).registry


_platforms: dict[int, Platform] = {}


def open_platform(settings: Settings) -> Platform:
    """The platform of this command: built once from `settings`, as every entry point does."""
    # Imported here: the platform loads prometheus_client, which `nextoffer worker` must
    # import only after setting PROMETHEUS_MULTIPROC_DIR (worker/metrics.py).
    from nextoffer.platform import build_platform

    found = _platforms.get(id(settings))
    if found is None or found.settings is not settings:
        found = _platforms[id(settings)] = build_platform(settings, pool_size=5)
    return found
