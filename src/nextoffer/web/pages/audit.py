"""The audit trail (admin only): who read whose data and who changed what, newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from nextoffer.domain.audit import Action, parse_actor, parse_since
from nextoffer.domain.errors import InvalidRequestError
from nextoffer.domain.roles import Role
from nextoffer.store.audit import find_entries
from nextoffer.web.console import PageDep, PageError, needs

router = APIRouter(include_in_schema=False)

LIMIT = 200


@router.get("/audit")
def audit(
    page: PageDep,
    customer: Annotated[str, Query(max_length=64)] = "",
    actor: Annotated[str, Query(max_length=120)] = "",
    since: Annotated[str, Query(max_length=40)] = "",
    action: Annotated[str, Query(max_length=32)] = "",
) -> Response:
    """Entries matching the filters; a customer id is hashed as the trail stores it."""
    needs(page.session, Role.ADMIN, "Reading the audit trail")
    customer, actor, since, action = (v.strip() for v in (customer, actor, since, action))
    trail = page.services.audit
    kind, who = parse_actor(actor) if actor else (None, None)
    try:
        start = parse_since(since) if since else None
    except InvalidRequestError as exc:
        raise PageError(422, "Unknown time", str(exc)) from None
    rows = find_entries(
        page.services.engine,
        customer_digest=trail.digest(customer) if customer else None,
        actor_kind=kind,
        actor_id=who,
        action=action or None,
        since=start,
        limit=LIMIT,
    )
    return page.render(
        "audit.html",
        {
            "title": "Audit trail",
            "rows": rows,
            "limit": LIMIT,
            "actions": [a.value for a in Action],
            "filters": {"customer": customer, "actor": actor, "since": since, "action": action},
            "enabled": trail.enabled,
        },
    )
