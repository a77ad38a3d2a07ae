"""The `nextoffer` command: every job and operator action, as thin calls into the pipelines.

This module only assembles the app; the commands live in one module per group.
"""

from __future__ import annotations

import typer

from nextoffer.cli import (
    accounts,
    audit,
    backup,
    campaign,
    customers,
    data,
    etl,
    evaluate,
    impact,
    models,
    ops,
    score,
    serve,
)
from nextoffer.cli.common import load_settings

__all__ = ["app", "load_settings"]

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

# The order here is the order `nextoffer --help` lists them in: commands, then groups.
for command in (
    data.generate,
    data.ingest,
    data.features,
    serve.precompute,
    serve.worker,
    serve.beat,
    serve.serve,
    serve.quickstart,
    models.train,
    score.score,
    impact.impact,
    audit.audit,
    customers.retention,
):
    app.command()(command)
app.add_typer(data.db_app, name="db")
app.add_typer(data.data_app, name="data")
app.add_typer(accounts.keys_app, name="keys")
app.add_typer(accounts.users_app, name="users")
app.add_typer(evaluate.evaluate_app, name="evaluate")
app.add_typer(campaign.campaign_app, name="campaign")
app.add_typer(customers.customers_app, name="customers")
app.add_typer(models.models_app, name="models")
app.add_typer(etl.etl_app, name="etl")
app.add_typer(backup.app, name="backup")
ops.register(app)
