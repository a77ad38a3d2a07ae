"""Who looked at whose data: one ASGI middleware audits every request naming a customer.

After routing, any route of the API or the console with a `{customer_id}` path parameter
(offers, churn risk, segment, the customer 360 page, consent, erasure...) is recorded in
the audit trail: a read for GET and HEAD; otherwise an erasure (DELETE of the customer), a
consent change (a `/consent` route) or another change. Recorded centrally, so a new
route about one customer is audited without remembering to. The caller is the principal
the route's authentication left in the request state (an API key or user, or the console's
signed-in person); a request refused before that (no credentials, wrong role) read nothing
and is not recorded. Recording only appends to a buffer; the write happens in batches.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nextoffer.domain.audit import Action, AuditEntry
from nextoffer.serving.audit import AuditTrail, request_actor

log = logging.getLogger(__name__)

CUSTOMER_PARAM = "customer_id"
_READS = frozenset({"GET", "HEAD"})


def action_of(method: str, template: str) -> Action:
    """What a request about one customer did, by its method and route template."""
    if method in _READS:
        return Action.CUSTOMER_READ
    if method == "DELETE" and template.endswith("/{customer_id}"):
        return Action.CUSTOMER_ERASE
    if template.endswith("/consent"):
        return Action.CONSENT_CHANGE
    return Action.CUSTOMER_CHANGE


class AuditMiddleware:
    """Records each authenticated request about one customer; passes the rest straight on."""

    def __init__(self, app: ASGIApp, *, trail: AuditTrail) -> None:
        self.app = app
        self.trail = trail

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Cheap test first: only paths with a customers segment can carry the parameter.
        if scope["type"] != "http" or not self.trail.enabled or "/customers/" not in scope["path"]:
            await self.app(scope, receive, send)
            return
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            try:
                self._record(scope, status)
            except Exception:  # the answer is already out: say so loudly, never break it
                log.exception("audit entry for %s %s not recorded", scope["method"], scope["path"])

    def _record(self, scope: Scope, status: int) -> None:
        customer = (scope.get("path_params") or {}).get(CUSTOMER_PARAM)
        if not isinstance(customer, str):
            return
        actor = request_actor(scope)
        if actor is None:
            return
        method = str(scope["method"])
        template = str(getattr(scope.get("route"), "path", None) or scope["path"])
        self.trail.record(
            AuditEntry.of(
                actor,
                action_of(method, template),
                f"{method} {template}",
                customer_digest=self.trail.digest(customer),
                detail={"status": status},
            )
        )
