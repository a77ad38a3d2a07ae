"""Log in and out: the API's user accounts and passwords, throttled like `POST /v1/auth/token`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from nextoffer.domain.errors import BusyError, RateLimitedError
from nextoffer.serving.users import PASSWORD_MAX
from nextoffer.web.auth import CSRF_FIELD, safe_next
from nextoffer.web.console import ConsoleDep, FormDep, PageError, limit, render

router = APIRouter(include_in_schema=False)


def _form(
    request: Request, console: ConsoleDep, next_path: str, error: str, status: int
) -> Response:
    # Signed double submit: the nonce goes into a cookie, its MAC into the form.
    nonce, token = console.auth.new_login_nonce()
    response = render(
        request,
        console,
        "login.html",
        {"title": "Sign in", "next": safe_next(next_path), "error": error, "login_csrf": token},
        status,
    )
    console.auth.set_login_nonce(response, nonce)
    return response


@router.get("/login")
def login_page(
    request: Request,
    console: ConsoleDep,
    next_path: Annotated[str, Query(alias="next", max_length=2000)] = "/",
) -> Response:
    """The login form (or straight on, when already signed in)."""
    if console.auth.session(request) is not None:
        return RedirectResponse(safe_next(next_path), status_code=303)
    return _form(request, console, next_path, "", 200)


@router.post("/login")
async def login(
    request: Request,
    console: ConsoleDep,
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=PASSWORD_MAX)] = "",
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=200)] = "",
    next_path: Annotated[str, Form(alias="next", max_length=2000)] = "/",
) -> Response:
    """Check the password; on success a session cookie and back to where the person was."""
    if not console.auth.login_form_ok(request, csrf_token):
        raise PageError(
            403,
            "Form refused",
            "The login form's security token is missing or out of date. Reload the page and "
            "try again.",
        )
    client = request.client.host if request.client else "unknown"
    # The same counters as POST /v1/auth/token: guessing through the console or the API
    # draws on one request budget per address and one backoff per (username, address).
    limit(console, f"login:{client}")
    try:
        # argon2 takes tens of milliseconds of CPU on purpose: queued, off the event loop.
        principal = await console.logins.attempt(username.strip(), password, client)
    except RateLimitedError as exc:
        raise PageError(429, "Too many attempts", str(exc), exc.retry_after_s) from None
    except BusyError as exc:
        raise PageError(503, "Busy", str(exc), exc.retry_after_s) from None
    if principal is None:
        return await run_in_threadpool(
            _form,
            request,
            console,
            next_path,
            "Wrong username or password, or the account is disabled.",
            401,
        )
    response = RedirectResponse(safe_next(next_path), status_code=303)
    console.auth.set_session(response, console.auth.issue(principal))
    console.auth.clear_login_nonce(response)
    return response


@router.post("/logout")
def logout(request: Request, post: FormDep) -> Response:
    """End the session server-side, forget its cookie and go to the login page."""
    post.console.auth.revoke(request)
    response = RedirectResponse("/login", status_code=303)
    post.console.auth.clear_session(response)
    return response
