"""`nextoffer score`: offers and churn for customers given in a file, nothing stored."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from nextoffer.cli.common import console, err_console, handles_errors, load_settings, open_platform
from nextoffer.store.engine import wait_for_database

# Reasons of rejected rows shown on the console; the rest are counted.
SHOWN_REJECTS = 50


@handles_errors
def score(
    customers: Annotated[
        Path, typer.Option(help="customers file in the import format (.csv, .csv.gz, .parquet)")
    ],
    out: Annotated[
        str, typer.Option(help="FILE.csv, FILE.csv.gz, FILE.parquet or s3://bucket/key.csv")
    ],
    subscriptions: Annotated[
        Path | None, typer.Option(help="their subscriptions (holdings), in the import format")
    ] = None,
    transactions: Annotated[
        Path | None, typer.Option(help="their transactions (purchase history), optional")
    ] = None,
    events: Annotated[
        Path | None, typer.Option(help="their events (contacts, engagement), optional")
    ] = None,
    mapping: Annotated[
        str | None,
        typer.Option(help="mapping file for the input files (default: NEXTOFFER_INGEST_MAPPING)"),
    ] = None,
    channel: Annotated[str | None, typer.Option(help="only offers allowed in this channel")] = None,
    as_of: Annotated[
        datetime | None,
        typer.Option(help="measure features at this UTC instant (default: the data's clock)"),
    ] = None,
) -> None:
    """Score customers given in a file with the champion offers and churn models.

    The rows are validated as `nextoffer ingest` validates them (bad rows are listed with
    their reason and left out), features are computed as the features job does, and the
    champions score them; nothing is stored in the platform's database. One output row per
    customer: churn risk and band, offer_1..offer_3 with their scores.
    """
    from nextoffer.usecases.score_file import ScoreRequest, score_files

    settings = load_settings()
    platform = open_platform(settings)
    wait_for_database(platform.engine, settings.db_wait_timeout_s)
    request = ScoreRequest(
        customers=customers,
        subscriptions=subscriptions,
        transactions=transactions,
        events=events,
        mapping=mapping,
        channel=channel,
        as_of=None if as_of is None else as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC),
    )
    with err_console.status("scoring"):
        result = score_files(platform.services, request, out)
    for rejected in result.rejected[:SHOWN_REJECTS]:
        console.print(
            f"rejected: {rejected.entity} line {rejected.line}: {rejected.reason}",
            highlight=False,
            soft_wrap=True,
        )
    if len(result.rejected) > SHOWN_REJECTS:
        console.print(f"rejected: … {len(result.rejected) - SHOWN_REJECTS:,} more", highlight=False)
    console.print(result.summary(), highlight=False, soft_wrap=True)
