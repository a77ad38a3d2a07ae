"""`nextoffer campaign export`: the customers to contact and their offer, as a file."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import MofNCompleteColumn

from nextoffer.cli.audit import audit_campaign
from nextoffer.cli.common import console, handles_errors, load_settings, open_platform, progress
from nextoffer.store.engine import wait_for_database

campaign_app = typer.Typer(help="Campaigns: export the customers to contact with their offer.")


@campaign_app.command("export")
@handles_errors
def export(
    top: Annotated[int, typer.Option(min=1, help="how many customers: the N best by score")],
    out: Annotated[
        str, typer.Option(help="FILE.csv, FILE.csv.gz, FILE.parquet or s3://bucket/key.csv")
    ],
    channel: Annotated[
        str,
        typer.Option(
            help="the campaign's channel (retail, web, app, call_center, telesales): offers "
            "allowed in it, customers open to it (consent, do not contact, quiet hours)"
        ),
    ],
    offer: Annotated[
        str | None,
        typer.Option(help="one product: customers whose answer has it, ranked by its score"),
    ] = None,
    segment: Annotated[
        str | None, typer.Option(help="only customers of this segment (id or name)")
    ] = None,
    churn_band: Annotated[
        str | None, typer.Option(help="only customers of this churn band (low, medium, high)")
    ] = None,
    k: Annotated[
        int | None,
        typer.Option(min=1, help="offers asked per customer (default: the API's default k)"),
    ] = None,
    commit: Annotated[
        bool,
        typer.Option("--commit", help="record each exported offer as a contact (default: dry run)"),
    ] = False,
) -> None:
    """Export the N best customers with their offer, score, propensity, value and reasons.

    Each customer's offers are what the API answers now (`GET /v1/customers/{id}/offers`,
    with CHANNEL): consent and contact policy, eligibility and product rules, holdings,
    contact caps and experiments apply as there. With --offer, the customers whose answer
    contains that product, ranked by its score; otherwise each customer's first offer. A
    dry run writes the file only; --commit also records each offer as an impression in
    contact_history, so contact caps count it.
    """
    from nextoffer.usecases.campaigns import CampaignRequest, export_campaign

    settings = load_settings()
    platform = open_platform(settings)
    wait_for_database(platform.engine, settings.db_wait_timeout_s)
    request = CampaignRequest(
        top=top,
        offer=offer,
        segment=segment,
        churn_band=churn_band,
        channel=channel,
        k=k,
        commit=commit,
    )
    with progress(MofNCompleteColumn()) as bar:
        task = bar.add_task("campaign", total=None)
        result = export_campaign(
            platform.services,
            request,
            out,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    audit_campaign(platform, result)
    console.print(result.summary(), highlight=False, soft_wrap=True)
