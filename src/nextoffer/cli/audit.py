"""`nextoffer audit`: who read whose data and who changed what; and the commands' own entries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from nextoffer.cli.common import handles_errors, load_settings, open_platform, print_json
from nextoffer.domain.audit import Action, parse_actor, parse_since
from nextoffer.serving.audit import command_actor
from nextoffer.store.audit import AuditRow, find_entries
from nextoffer.store.engine import wait_for_database

if TYPE_CHECKING:
    from nextoffer.platform import Platform
    from nextoffer.usecases.campaigns import CampaignExport


def audit_change(
    platform: Platform,
    action: Action,
    target: str | None,
    *,
    customer_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Write a command's change to the audit trail now, as the operating system's user."""
    platform.audit.change(
        command_actor(), action, target, customer_id=customer_id, detail=detail, at_once=True
    )


def audit_campaign(platform: Platform, result: CampaignExport) -> None:
    """A campaign export: one entry for the export, one read entry per exported customer."""
    trail, actor = platform.audit, command_actor()
    request = result.request
    detail = {"rows": len(result.rows), "channel": request.channel, "commit": request.commit}
    trail.change(actor, Action.CAMPAIGN_EXPORT, result.campaign_id, detail=detail)
    target = f"campaign {result.campaign_id}"
    for row in result.rows:
        # The file holds each exported customer's offer: a read of their data.
        trail.change(actor, Action.CUSTOMER_READ, target, customer_id=row.customer_id)
    trail.flush()


def line_of(row: AuditRow) -> str:
    """One entry as one line: when, who, what, on what, from where, which request, detail."""
    parts = [row.at.strftime("%Y-%m-%d %H:%M:%S"), row.actor, row.action]
    if row.target:
        parts.append(row.target)
    if row.customer_digest:
        parts.append(f"customer {row.customer_digest[:12]}")
    if row.address:
        parts.append(f"from {row.address}")
    if row.request_id:
        parts.append(f"request {row.request_id}")
    parts += [f"{k}={v}" for k, v in sorted(row.detail.items())]
    return "  ".join(parts)


@handles_errors
def audit(
    customer: Annotated[
        str | None, typer.Option(help="only entries about this customer id (hashed, as stored)")
    ] = None,
    actor: Annotated[
        str | None, typer.Option(help="only this key id or username (or key:ID, user:NAME)")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="only since: an age (30m, 24h, 7d) or an ISO date/time")
    ] = None,
    action: Annotated[str | None, typer.Option(help="only this action, e.g. customer.read")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many, newest first")] = 200,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON, not lines")] = False,
) -> None:
    """The audit trail, newest first: customer reads and changes, who, when, from where.

    Each entry names the actor (key id, username or the command's user), the client
    address and the request id. Customers are stored as keyed digests only; give the id
    with --customer and it is hashed the same way.
    """
    settings = load_settings()
    platform = open_platform(settings)
    wait_for_database(platform.engine, settings.db_wait_timeout_s)
    kind, who = parse_actor(actor) if actor else (None, None)
    rows = find_entries(
        platform.engine,
        customer_digest=platform.audit.digest(customer) if customer else None,
        actor_kind=kind,
        actor_id=who,
        action=action,
        since=parse_since(since) if since else None,
        limit=limit,
    )
    if json_out:
        print_json([{**vars(r), "actor": r.actor} for r in rows])
        return
    if not rows:
        typer.echo("audit: no entries match")
        return
    for row in rows:
        typer.echo(line_of(row))
