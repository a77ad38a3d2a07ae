"""`nextoffer customers forget|export|reapply` and `nextoffer retention`: privacy rights."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from nextoffer.cli.audit import audit_change
from nextoffer.cli.common import console, handles_errors, load_settings, open_platform, print_json
from nextoffer.domain.audit import Action
from nextoffer.store.engine import wait_for_database

if TYPE_CHECKING:  # the platform loads prometheus_client: imported when a command runs
    from nextoffer.platform import Platform

customers_app = typer.Typer(
    help="Customers' privacy rights: erase (forget), export (access), re-apply erasures."
)


def _platform() -> Platform:
    settings = load_settings()
    platform = open_platform(settings)
    wait_for_database(platform.engine, settings.db_wait_timeout_s)
    return platform


@customers_app.command("forget")
@handles_errors
def forget(
    customer_ids: Annotated[list[str], typer.Argument(help="the ids of the customers to erase")],
    even_unknown: Annotated[
        bool,
        typer.Option(help="record ids stored nowhere yet too, so that imports drop them"),
    ] = False,
) -> None:
    """Erase customers everywhere: every table, cached answers, spool and quarantine files.

    Their rows are deleted (events included, not pseudonymised). A keyed digest of each id
    goes to the erasure ledger, in the database and outside it (VAR_DIR/privacy and the
    backup store), so `backup restore` and the nightly ETL never bring them back. All or
    nothing: an id stored nowhere refuses the command, unless --even-unknown.
    """
    from nextoffer.usecases.privacy import forget_customers

    platform = _platform()
    result = forget_customers(platform.services, customer_ids, even_unknown=even_unknown)
    for customer_id in dict.fromkeys(customer_ids):
        audit_change(platform, Action.CUSTOMER_ERASE, "customer", customer_id=customer_id)
    console.print(result.summary(), highlight=False, soft_wrap=True)


@customers_app.command("export")
@handles_errors
def export(customer_id: Annotated[str, typer.Argument(help="the customer's id")]) -> None:
    """Print every stored row about one customer as JSON, by table (right of access)."""
    from nextoffer.usecases.privacy import export_customer

    platform = _platform()
    data = export_customer(platform.services, customer_id)
    audit_change(platform, Action.CUSTOMER_READ, "export", customer_id=customer_id)
    print_json(data)


@customers_app.command("reapply")
@handles_errors
def reapply(
    every: Annotated[
        bool, typer.Option(help="every ledger entry, not only those the database lacks")
    ] = False,
) -> None:
    """Erase again the customers the erasure ledger names (after a point-in-time restore).

    `backup restore` does this by itself; a point-in-time restore ends with a server that
    you start, so run this against it (the nightly ETL does it too before loading).
    """
    from nextoffer.usecases.privacy import reapply_ledger

    result = reapply_ledger(_platform().services, every=every)
    rows = sum(result.rows.values())
    console.print(
        f"customers reapply: {result.customers:,} customers and {rows:,} rows erased again",
        highlight=False,
    )


@handles_errors
def retention(
    dry_run: Annotated[bool, typer.Option(help="count only, delete nothing")] = False,
) -> None:
    """Purge events, transactions and contact history older than their retention setting.

    NEXTOFFER_RETENTION_{EVENTS,TRANSACTIONS,CONTACT_HISTORY}_MONTHS; 0 keeps forever. A
    retention shorter than the training, impact or contact-cap window is refused, with the
    reason. The `retention` job.
    """
    from nextoffer.jobs.calls import run_retention

    settings = load_settings()
    platform = _platform()
    result = run_retention(platform.engine, settings, dry_run=dry_run)
    console.print(result.summary(), highlight=False, soft_wrap=True)
