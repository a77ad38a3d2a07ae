"""The console's half of the app: page routes, static files and the console's error pages."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

from nextoffer.platform import Platform
from nextoffer.serving.revocations import RevokedSessions
from nextoffer.web.auth import ConsoleAuth
from nextoffer.web.console import (
    STATIC,
    STATIC_PREFIX,
    Console,
    LoginRequiredError,
    PageError,
    error_page,
    login_redirect,
    make_templates,
)
from nextoffer.web.pages import (
    audit,
    customers,
    data,
    experiments,
    impact,
    models,
    overview,
    products,
    session,
)

ROUTERS = (
    session.router,
    overview.router,
    customers.router,
    products.router,
    experiments.router,
    impact.router,
    models.router,
    data.router,
    audit.router,
)


def install_console(app: FastAPI, platform: Platform) -> None:
    """Add the console's pages and static files to `app`, beside the API.

    The pages call the same use cases and services as the API, so what they show is what
    the API answers. The console's routes stay out of the OpenAPI document.
    """
    settings = platform.settings
    console = Console(
        services=platform.services,
        settings=settings,
        auth=ConsoleAuth(
            platform.services.engine,
            platform.jwt_secret,
            secure=settings.console_secure_cookies,
            ttl_s=settings.console_session_ttl_s,
            cache_s=settings.auth_cache_s,
            revoked=RevokedSessions(platform.cache),
        ),
        templates=make_templates(),
        limiter=platform.limiter,
        logins=platform.logins,
    )
    app.state.console = console
    for router in ROUTERS:
        app.include_router(router)
    app.mount(STATIC_PREFIX, StaticFiles(directory=STATIC), name="console-static")

    async def to_login(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LoginRequiredError)
        return login_redirect(exc.next_path)

    async def page_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageError)
        return error_page(request, console, exc)

    app.add_exception_handler(LoginRequiredError, to_login)
    app.add_exception_handler(PageError, page_error)
