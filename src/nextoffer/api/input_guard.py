"""Refuses NUL, control characters, invalid UTF-8 and over-long text in paths, queries and forms.

One check in front of every route, the API's and the console's alike, so no handler (and no
database: PostgreSQL refuses NUL in text with an error, not a row) ever sees such text. JSON
bodies are checked by their pydantic models (`api.schemas.InputModel`).
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nextoffer.api.problems import PROBLEM_TYPE_BASE
from nextoffer.domain.limits import BAD_ENCODING, MAX_TEXT_LEN, TOO_LONG, text_problem

FORM_MEDIA_TYPE = b"application/x-www-form-urlencoded"
API_PATHS = ("/v1", "/health", "/ready", "/metrics", "/openapi.json", "/docs", "/redoc")
"""Paths answered with a problem document; every other path is a console page."""
_SAYS = {
    BAD_ENCODING: "contains NUL, a control character or invalid Unicode",
    TOO_LONG: f"is longer than {MAX_TEXT_LEN} characters",
}


@dataclass(frozen=True)
class Refusal:
    """Why a request was refused: the problem (`bad_encoding`, `too_long`) and where."""

    reason: str
    where: str

    @property
    def detail(self) -> str:
        """The sentence the caller reads."""
        return f"{self.where} {_SAYS[self.reason]}"


class InputGuard:
    """ASGI middleware: a 422 (problem document or console page) for text no value may hold.

    Sits inside `RequestMiddleware`, so the body limit applies before a form is read here
    and the refusal carries the request id.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = path_refusal(scope) or query_refusal(scope.get("query_string", b""))
        if refusal is None and _is_form(scope["headers"]):
            body = await _read_body(receive)
            refusal = fields_refusal(body, "form field")
            receive = _replay(body, receive)
        if refusal is not None:
            await _refuse(scope, send, refusal)
            return
        await self.app(scope, receive, send)


def path_refusal(scope: Scope) -> Refusal | None:
    """Why the request's path is refused, if it is (decoded from its raw, percent form)."""
    raw = scope.get("raw_path")
    if raw is None:
        path = str(scope.get("path", ""))
        return None if text_problem(path, 8 * MAX_TEXT_LEN) is None else _refusal(path, "the path")
    return _decoded_refusal(bytes(raw), "the path", plus_is_space=False)


def query_refusal(query: bytes) -> Refusal | None:
    """Why a query string is refused, if it is: a name or value that no text may be."""
    return fields_refusal(query, "query parameter")


def fields_refusal(encoded: bytes, what: str) -> Refusal | None:
    """The first name or value of `name=value&...` that is refused, and why."""
    for pair in encoded.split(b"&"):
        if not pair:
            continue
        name, _, value = pair.partition(b"=")
        refused = _decoded_refusal(name, f"a {what} name", plus_is_space=True)
        if refused is not None:
            return refused
        where = f"{what} {_shown(name)}"
        refused = _decoded_refusal(value, where, plus_is_space=True)
        if refused is not None:
            return refused
    return None


def _decoded_refusal(raw: bytes, where: str, *, plus_is_space: bool) -> Refusal | None:
    if plus_is_space:
        raw = raw.replace(b"+", b" ")
    try:
        # Strict UTF-8: "%FF" is invalid text, not a replacement character to store.
        text = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return Refusal(BAD_ENCODING, where)
    return _refusal(text, where)


def _refusal(text: str, where: str) -> Refusal | None:
    reason = text_problem(text, MAX_TEXT_LEN)
    return None if reason is None else Refusal(reason, where)


def _shown(raw_name: bytes) -> str:
    # A name is echoed only when it is plain: it goes into JSON and HTML.
    name = unquote_to_bytes(raw_name.replace(b"+", b" ")).decode("utf-8", errors="replace")
    return f"'{name}'" if name.isascii() and name.isprintable() and len(name) <= 64 else "(unnamed)"


def _is_form(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == FORM_MEDIA_TYPE
    return False


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()  # the disconnect, when the app waits for one
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def is_api_path(path: str) -> bool:
    """True for the API's paths (answered with problem documents), False for the console."""
    return any(path == p or path.startswith(f"{p}/") for p in API_PATHS)


async def _refuse(scope: Scope, send: Send, refusal: Refusal) -> None:
    path = str(scope.get("path", ""))
    request_id = scope.get("state", {}).get("request_id")
    if is_api_path(path):
        body = json.dumps(
            {
                "type": PROBLEM_TYPE_BASE + refusal.reason.replace("_", "-"),
                "title": "Unprocessable Content",
                "status": 422,
                "detail": refusal.detail,
                "instance": quote(path, safe="/"),
                "request_id": request_id,
            }
        ).encode()
        media_type = b"application/problem+json"
    else:
        body = _PAGE.format(detail=html.escape(refusal.detail), request_id=request_id).encode()
        media_type = b"text/html; charset=utf-8"
    await send(
        {
            "type": "http.response.start",
            "status": 422,
            "headers": [
                (b"content-type", media_type),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Input refused · nextoffer</title></head>
<body><main><h1>Input refused</h1>
<p>The request was not processed: {detail}. Remove it and try again.</p>
<p><a href="/">Back to the console</a> · request id {request_id}</p></main></body></html>
"""
