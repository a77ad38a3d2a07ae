"""One ASGI middleware for every request: request id, body limit, security headers, metrics."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nextoffer.observe.logs import correlation_id
from nextoffer.observe.metrics import ApiMetrics
from nextoffer.observe.tracing import tag_current_span
from nextoffer.serving.audit import principal_of

log = logging.getLogger("nextoffer.access")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")
_UNMATCHED = "<unmatched>"


CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'self'"
)
"""Every page's CSP; a page that sets its own (only /docs: its inline script) keeps that."""

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
)
"""Headers every response carries (the residency-scheduler seed's list, plus a CSP)."""
_WITHOUT_CSP = tuple(h for h in SECURITY_HEADERS if h[0] != b"content-security-policy")


class RequestMiddleware:
    """Gives each request an id, refuses oversized bodies, adds headers, counts and logs.

    Written as plain ASGI rather than BaseHTTPMiddleware: it sits on the hot path of every
    cached answer, and the plain form adds no task or stream per request.
    """

    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.headers = SECURITY_HEADERS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _incoming_request_id(scope["headers"]) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = correlation_id.set(request_id)
        tag_current_span(request_id)
        status = 500
        method = scope["method"]

        declared = _content_length(scope["headers"])
        if declared is not None and declared > self.max_body_bytes:
            await self._too_large(scope, send, request_id)
            self._observe(scope, method, 413, started, request_id)
            correlation_id.reset(token)
            return

        received = 0
        exceeded = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    exceeded = True
                    raise BodyTooLargeError
            return message

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if exceeded:
                # FastAPI turns any error while reading a body into its own 400 answer; a
                # body over the limit is answered 413 whatever the app made of the error.
                if message["type"] == "http.response.start":
                    status = 413
                    await self._too_large(scope, send, request_id)
                return
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                own_csp = any(name == b"content-security-policy" for name, _ in headers)
                headers.extend(_WITHOUT_CSP if own_csp else self.headers)
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except BodyTooLargeError:
            status = 413
            await self._too_large(scope, send, request_id)
        finally:
            self._observe(scope, method, status, started, request_id)
            correlation_id.reset(token)

    def _observe(
        self, scope: Scope, method: str, status: int, started: float, request_id: str
    ) -> None:
        elapsed = time.perf_counter() - started
        route = scope.get("route")
        template = getattr(route, "path", None) or _UNMATCHED
        self.metrics.http_requests.labels(method, template, str(status)).inc()
        self.metrics.http_duration.labels(method, template).observe(elapsed)
        if status >= 500 or template != "/metrics":
            extra: dict[str, object] = {
                "route": template,
                "status": status,
                "duration_ms": round(elapsed * 1000, 2),
            }
            # Who called: the key id or the user, as the audit trail names them.
            principal = principal_of(scope.get("state") or {})
            if principal is not None:
                extra["actor"] = f"{principal.kind}:{principal.id}"
            log.info("%s %s %s", method, scope.get("path", ""), status, extra=extra)

    async def _too_large(self, scope: Scope, send: Send, request_id: str) -> None:
        body = json.dumps(
            {
                "type": "https://nextoffer.dev/problems/payload-too-large",
                "title": "Content Too Large",
                "status": 413,
                "detail": f"request body over {self.max_body_bytes} bytes",
                "instance": scope.get("path", ""),
                "request_id": request_id,
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", request_id.encode()),
                    *self.headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class BodyTooLargeError(Exception):
    """The body grew past the limit while being read."""


def _incoming_request_id(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            # A caller's id is kept only when it is harmless to log and echo back.
            return text if _REQUEST_ID.fullmatch(text) else None
    return None


def _content_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
