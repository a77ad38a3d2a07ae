"""One trained world and one real server (`nextoffer serve`: API + console) per session, and
headless Debian Chromium driven by Playwright.

The world is the e2e one (`build_world`) plus the bad-row corpus ingested on top (so the
quarantine has rows with every reason), a second churn model version (so there is
something to promote), a user per role and API keys to compare with the API. A tiny fake
Alertmanager answers the overview's alerts request. Every browser test gets a fresh
context (no cookies), leaves a screenshot under test-artifacts/browser/, and fails if a
page asked any host but the app for anything.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from nextoffer.store.engine import make_engine
from nextoffer.store.schema import Customer, PrecomputedOffers
from tests.conftest import IN_CI
from tests.e2e.server import ROOT, ApiServer, build_world, create_key, run_cli, world_env

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
BAD_ROWS = ROOT / "tests" / "fixtures" / "bad_rows"
ROLES = ("viewer", "writer", "operator", "admin")
VIEWPORT = {"width": 1280, "height": 800}

ALERTS = [
    {
        "labels": {"alertname": "NextofferHighErrorRate", "severity": "critical"},
        "annotations": {"summary": "5xx above 1 % for 5 minutes"},
        "startsAt": "2026-11-23T10:00:00.000Z",
        "status": {"state": "active", "silencedBy": [], "inhibitedBy": []},
    },
    {
        "labels": {"alertname": "NextofferBackupStale", "severity": "warning"},
        "annotations": {"summary": "no successful backup for 7 hours"},
        "startsAt": "2026-11-23T09:00:00.000Z",
        "status": {"state": "active", "silencedBy": [], "inhibitedBy": []},
    },
    {
        "labels": {"alertname": "NextofferSilencedThing", "severity": "warning"},
        "annotations": {"summary": "silenced, so not open"},
        "startsAt": "2026-11-23T08:00:00.000Z",
        "status": {"state": "suppressed", "silencedBy": ["x"], "inhibitedBy": []},
    },
]


def password(role: str) -> str:
    """The test password of the user of `role` (12+ characters, as accounts require)."""
    return f"console-{role}-password"


@dataclass
class FakeAlertmanager:
    """Answers GET /api/v2/alerts with ALERTS and remembers the paths it was asked for."""

    server: ThreadingHTTPServer
    paths: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        """Base URL."""
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"


def start_alertmanager() -> FakeAlertmanager:
    """A fake Alertmanager on a free port, served by a daemon thread."""
    holder: list[FakeAlertmanager] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            holder[0].paths.append(self.path)
            if not self.path.startswith("/api/v2/alerts"):
                self.send_error(404)
                return
            body = json.dumps(ALERTS).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder.append(FakeAlertmanager(server))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return holder[0]


@dataclass
class ConsoleWorld:
    """The served world: where, its database, API keys, and customers handed out to tests."""

    url: str
    env: dict[str, str]
    engine: Engine
    keys: dict[str, str]
    alertmanager: FakeAlertmanager
    server: ApiServer
    _customers: list[str] = field(default_factory=list)

    def api(self, role: str = "viewer") -> httpx.Client:
        """An httpx client with the API key of `role`."""
        return httpx.Client(base_url=self.url, headers={"X-API-Key": self.keys[role]}, timeout=30)

    def take(self, n: int, with_offers: bool = False) -> list[str]:
        """`n` customers no other test has used (with precomputed offers when asked)."""
        if not self._customers:
            with self.engine.connect() as conn:
                self._customers = list(
                    conn.execute(
                        select(Customer.customer_id)
                        .join(
                            PrecomputedOffers,
                            PrecomputedOffers.customer_id == Customer.customer_id,
                        )
                        .order_by(Customer.customer_id)
                    ).scalars()
                )
        taken, self._customers = self._customers[:n], self._customers[n:]
        assert len(taken) == n, "the world ran out of customers"
        return taken


def require_chromium() -> None:
    """Skip (locally) or fail (CI) without Debian's Chromium."""
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing: apt-get install chromium"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: a missing tool is a failure)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleWorld]:
    """Build the world, start the server on it, stop it at the end of the session."""
    var_dir = tmp_path_factory.mktemp("console-world")
    database_url = f"sqlite:///{var_dir / 'nextoffer.db'}"
    build_world(var_dir, database_url)
    env = world_env(var_dir, database_url)
    bad_rows = shutil.copytree(BAD_ROWS, var_dir / "bad_rows")
    run_cli(env, "ingest", str(bad_rows))
    # Same data and seed: v2 is registered but does not beat v1, so it waits for a person.
    run_cli(env, "train", "--models", "churn", "--no-score")
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(
            pool.map(
                lambda role: run_cli(
                    env,
                    "users",
                    "create",
                    f"{role}1",
                    "--role",
                    role,
                    "--password-stdin",
                    stdin=password(role) + "\n",
                ),
                ROLES,
            )
        )
        keys = dict(zip(ROLES, pool.map(lambda role: create_key(env, role), ROLES), strict=True))
    alertmanager = start_alertmanager()
    env = {
        **env,
        "NEXTOFFER_CONSOLE_SECURE_COOKIES": "false",
        "NEXTOFFER_ALERTMANAGER_URL": alertmanager.url,
        "NEXTOFFER_AUTH_CACHE_S": "1",
    }
    server = ApiServer(env, var_dir / "api.log").start()
    engine = make_engine(database_url)
    try:
        yield ConsoleWorld(server.url, env, engine, keys, alertmanager, server)
    finally:
        server.stop()
        engine.dispose()
        alertmanager.server.shutdown()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, through Playwright (no `playwright install`)."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, world: ConsoleWorld, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A page in a fresh context; afterwards a screenshot, and no request left the app."""
    context = browser.new_context(viewport=VIEWPORT, base_url=world.url, accept_downloads=True)
    foreign: list[str] = []

    def watch(req: Any) -> None:
        url: str = req.url
        if not url.startswith((world.url + "/", "data:", "about:", "blob:")):
            foreign.append(url)

    context.on("request", watch)
    opened = context.new_page()
    # Confirmation dialogs (promote, stop) are answered yes.
    opened.on("dialog", lambda dialog: dialog.accept())
    try:
        yield opened
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        try:
            opened.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        finally:
            context.close()
    assert foreign == [], f"pages asked other hosts: {foreign}"


def login(page: Any, role: str, next_path: str = "/") -> None:
    """Sign in through the login form as the user of `role` and land on `next_path`."""
    page.goto(next_path)
    page.wait_for_url(re.compile(r"/login"))
    page.fill("input[name=username]", f"{role}1")
    page.fill("input[name=password]", password(role))
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(re.compile(re.escape(next_path.split("?")[0]) + r"(\?.*)?$"))
