"""Makes the router's trailing-slash redirects relative, so they never echo the Host header."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class RelativeRedirects:
    """ASGI middleware: an absolute `Location` becomes its path and query.

    Starlette builds the `/path/` → `/path` redirect from the request's Host header, so a
    forged Host would come back as the place to go (cache poisoning, phishing links). The
    app never redirects off-site, so no absolute URL is lost.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_relative(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in _REDIRECTS:
                message["headers"] = [
                    (name, relative(value) if name.lower() == b"location" else value)
                    for name, value in message.get("headers", [])
                ]
            await send(message)

        await self.app(scope, receive, send_relative)


def relative(location: bytes) -> bytes:
    """`location` without scheme and host; one leading slash (`//host` would leave the site)."""
    parts = urlsplit(location.decode("latin-1"))
    if not parts.scheme and not parts.netloc and not location.startswith(b"//"):
        return location
    path = "/" + parts.path.lstrip("/")
    return (path + (f"?{parts.query}" if parts.query else "")).encode("latin-1")
