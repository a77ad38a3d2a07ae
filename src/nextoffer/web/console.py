"""What every console page shares: the app's services, templates, sign-in checks, rendering."""

from __future__ import annotations

import hmac
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

import jinja2
from cachetools import TLRUCache
from fastapi import Depends, Form, Request
from fastapi.templating import Jinja2Templates
from starlette.responses import HTMLResponse, RedirectResponse, Response

from nextoffer import __version__
from nextoffer.config import Settings
from nextoffer.domain.audit import Actor
from nextoffer.domain.errors import RateLimitedError
from nextoffer.domain.roles import Role
from nextoffer.serving.audit import request_actor
from nextoffer.serving.logins import Logins
from nextoffer.serving.rate_limit import RateLimiter
from nextoffer.store.runs import utcnow
from nextoffer.usecases.context import Services
from nextoffer.web.auth import CSRF_FIELD, ConsoleAuth, ConsoleSession, FlashKind

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
STATIC_PREFIX = "/static"

NAV = (
    ("/", "Overview"),
    ("/customers", "Customers"),
    ("/products", "Products"),
    ("/experiments", "Experiments"),
    ("/impact", "Impact"),
    ("/models", "Models"),
    ("/data", "Data & jobs"),
)

T = TypeVar("T")


class LoginRequiredError(Exception):
    """No valid session: the page answers with a redirect to /login."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class PageError(Exception):
    """An error shown as a page: status, a short title and a sentence saying what to do."""

    def __init__(
        self, status: int, title: str, detail: str, retry_after_s: int | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.retry_after_s = retry_after_s


class Memo:
    """Heavy aggregates kept for `ttl_s` seconds per process, so reloads cost nothing.

    Only for numbers that move slowly (customer counts, churn bands, uptake); the offer
    rates are read live on every load.
    """

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        # Each entry carries its own time to live: (ttl_s, value).
        self._values: TLRUCache[str, tuple[float, Any], float] = TLRUCache(
            1000, lambda _key, entry, now: now + entry[0], timer=clock
        )

    def get(self, key: str, compute: Callable[[], T], ttl_s: float | None = None) -> T:
        """The value under `key`, computed now when absent or older than its time to live.

        `ttl_s` overrides the default, for values whose key already says when they change
        (a scoring's instant, a day).
        """
        with self._lock:
            found = self._values.get(key)
        if found is not None:
            value: T = found[1]
            return value
        value = compute()
        with self._lock:
            self._values[key] = (self.ttl_s if ttl_s is None else ttl_s, value)
        return value


@dataclass
class Console:
    """The console's state, built once by `install_console` and kept on `app.state.console`."""

    services: Services
    settings: Settings
    auth: ConsoleAuth
    templates: Jinja2Templates
    limiter: RateLimiter
    logins: Logins
    memo: Memo = field(default_factory=lambda: Memo(30.0))


def get_console(request: Request) -> Console:
    """The console of the app serving this request."""
    console: Console = request.app.state.console
    return console


ConsoleDep = Annotated[Console, Depends(get_console)]


def signed_in(request: Request, console: ConsoleDep) -> ConsoleSession:
    """The signed-in person; otherwise the page redirects to /login and back afterwards."""
    session = console.auth.session(request)
    if session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequiredError(target)
    # The API's per-person budget: a script driving the console is limited like one
    # driving the API.
    limit(console, f"user:{session.username}")
    request.state.console_session = session
    return session


SessionDep = Annotated[ConsoleSession, Depends(signed_in)]


def form_session(
    session: SessionDep,
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=200)] = "",
) -> ConsoleSession:
    """The signed-in person of a form post whose CSRF token matches their session."""
    if not hmac.compare_digest(csrf_token.encode(), session.csrf.encode()):
        raise PageError(
            403,
            "Form refused",
            "The form's security token is missing or out of date. Reload the page and try again.",
        )
    return session


FormSessionDep = Annotated[ConsoleSession, Depends(form_session)]


@dataclass(frozen=True)
class Page:
    """A signed-in person's page request: what every page starts from."""

    request: Request
    console: Console
    session: ConsoleSession

    @property
    def services(self) -> Services:
        """The services the API answers from."""
        return self.console.services

    def render(self, template: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
        """`template` with `context`, as `render` makes every page."""
        return render(self.request, self.console, template, context, status)


def signed_in_page(request: Request, console: ConsoleDep, session: SessionDep) -> Page:
    """The page request of the signed-in person (a redirect to /login otherwise)."""
    return Page(request, console, session)


PageDep = Annotated[Page, Depends(signed_in_page)]


@dataclass(frozen=True)
class FormPost:
    """A signed-in person's form post, its CSRF token checked: what every form starts from."""

    console: Console
    session: ConsoleSession
    request: Request | None = None

    def needs(self, role: Role, action: str) -> None:
        """Refuse with a 403 page unless the person's role allows `action`."""
        needs(self.session, role, action)

    def redirect(
        self, url: str, message: str | None = None, kind: FlashKind = "ok"
    ) -> RedirectResponse:
        """303 to `url`, with a message for the next page."""
        return redirect(self.console, url, message, kind)

    @property
    def by(self) -> str:
        """Who acts, as the use cases record it."""
        return f"user:{self.session.username}"

    @property
    def actor(self) -> Actor:
        """Who acts, from where, in which request: as the audit trail records it."""
        found = None if self.request is None else request_actor(self.request.scope)
        return found or Actor("user", self.session.username)


def checked_form(request: Request, console: ConsoleDep, session: FormSessionDep) -> FormPost:
    """The form post of the signed-in person whose CSRF token matches their session."""
    return FormPost(console, session, request)


FormDep = Annotated[FormPost, Depends(checked_form)]


def limit(console: Console, principal: str) -> None:
    """Count one request against the API's rate limiter; a 429 page when over."""
    try:
        console.limiter.check(principal, console.services.metrics)
    except RateLimitedError as exc:
        raise PageError(429, "Too many requests", str(exc), exc.retry_after_s) from None


def needs(session: ConsoleSession, role: Role, action: str) -> None:
    """Refuse with a 403 page unless the person's role allows `action`."""
    if not session.can(role):
        raise PageError(
            403,
            "Not allowed",
            f"{action} needs the {role.value} role; you are signed in as "
            f"{session.username} ({session.role.value}).",
        )


def render(
    request: Request,
    console: Console,
    template: str,
    context: dict[str, Any],
    status: int = 200,
) -> HTMLResponse:
    """A page: the template with the person, their CSRF token, the menu and any flash."""
    session: ConsoleSession | None = getattr(request.state, "console_session", None)
    flash = console.auth.read_flash(request)
    page = {
        "user": session,
        "csrf": session.csrf if session else "",
        "csrf_field": CSRF_FIELD,
        "nav": NAV,
        "path": request.url.path,
        "flash": flash,
        "now": utcnow(),
        **context,
    }
    response = console.templates.TemplateResponse(request, template, page, status_code=status)
    if flash is not None:
        console.auth.drop_flash(response)
    # Pages show customer data: never kept by a shared cache or the back-forward cache.
    response.headers["Cache-Control"] = "no-store"
    return response


def redirect(
    console: Console, url: str, message: str | None = None, kind: FlashKind = "ok"
) -> RedirectResponse:
    """303 to `url` (after a form), with a message for the next page."""
    response = RedirectResponse(url, status_code=303)
    if message:
        console.auth.flash(response, message, kind)
    return response


def login_redirect(next_path: str) -> RedirectResponse:
    """303 to the login page, coming back to `next_path` afterwards."""
    return RedirectResponse(f"/login?next={quote(next_path, safe='/')}", status_code=303)


def error_page(request: Request, console: Console, exc: PageError) -> Response:
    """An error as a page with its status."""
    response = render(
        request, console, "error.html", {"title": exc.title, "detail": exc.detail}, exc.status
    )
    if exc.retry_after_s is not None:
        response.headers["Retry-After"] = str(exc.retry_after_s)
    return response


# --- template filters -----------------------------------------------------------------


def _num(value: float | int | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}"


def _pct(value: float | None, digits: int = 1) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value * 100:.{digits}f} %"


def _money(value: float | None) -> str:
    return "—" if value is None else f"{value:,.2f}"


def _when(value: datetime | date | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        # No-break spaces: a time never wraps inside a narrow table cell.
        return value.strftime("%Y-%m-%d\u00a0%H:%M\u00a0UTC")
    return value.isoformat()


def _age(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "never"
    delta = (now or utcnow()) - value
    seconds = delta.total_seconds()
    if seconds < 0:
        return "just now"
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min ago"
    if delta < timedelta(hours=48):
        return f"{seconds / 3600:.0f} h ago"
    return f"{delta.days} days ago"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s"


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def static_url(name: str) -> str:
    """A static file's URL, with the version so a new release is fetched afresh."""
    return f"{STATIC_PREFIX}/{name}?v={__version__}"


def make_templates() -> Jinja2Templates:
    """The Jinja2 environment: autoescaped, strict about undefined names, with filters."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        num=_num, pct=_pct, money=_money, when=_when, age=_age, duration=_duration, score=_score
    )
    env.globals.update(static=static_url, version=__version__)
    return Jinja2Templates(env=env)
