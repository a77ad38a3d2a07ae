"""`/docs`: Swagger UI from the package's own files, so it renders in a closed network.

FastAPI's default page loads Swagger UI from cdn.jsdelivr.net and its favicon from
fastapi.tiangolo.com; here the vendored swagger-ui-dist files (api/static/swagger-ui/, with
their licence) are served by the app itself under /docs/static. The page's one inline script
is allowed by its hash in this page's Content-Security-Policy; every other page keeps
`script-src 'self'`. ReDoc is not served.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

from nextoffer import __version__
from nextoffer.api.middleware import CONTENT_SECURITY_POLICY

ASSETS = Path(__file__).resolve().parent / "static"
ASSETS_PREFIX = "/docs/static"

router = APIRouter(include_in_schema=False)

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def asset_url(name: str) -> str:
    """An asset's URL, with the version so a new release is fetched afresh."""
    return f"{ASSETS_PREFIX}/{name}?v={__version__}"


def render(openapi_url: str = "/openapi.json", title: str = "nextoffer API") -> tuple[str, str]:
    """The Swagger UI page and a CSP that allows exactly its inline script."""
    page = get_swagger_ui_html(
        openapi_url=openapi_url,
        title=title,
        swagger_js_url=asset_url("swagger-ui/swagger-ui-bundle.js"),
        swagger_css_url=asset_url("swagger-ui/swagger-ui.css"),
        swagger_favicon_url=asset_url("favicon.svg"),
        oauth2_redirect_url=None,
    )
    body = bytes(page.body).decode()
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in _INLINE_SCRIPT.findall(body)
    )
    policy = CONTENT_SECURITY_POLICY.replace("script-src 'self'", f"script-src 'self' {hashes}")
    return body, policy


_BODY, _POLICY = render()


@router.get("/docs")
def docs() -> HTMLResponse:
    """Swagger UI for the OpenAPI document at /openapi.json."""
    return HTMLResponse(_BODY, headers={"Content-Security-Policy": _POLICY})


def install_docs(app: FastAPI) -> None:
    """Serve /docs and its assets (the app is built with `docs_url=None`)."""
    app.include_router(router)
    app.mount(ASSETS_PREFIX, StaticFiles(directory=ASSETS), name="docs-static")
