"""Logins resist guessing: backoff per (username, address), queued hashing, real logouts.

In process (TestClient, a fake clock for the backoff). The real server under 32 concurrent
logins is tests/e2e/test_login_load.py. Also: a known secret refuses to start without the
development flag.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from nextoffer.asgi import create_app
from nextoffer.cache import MemoryCache
from nextoffer.cache.redis_cache import RedisCache
from nextoffer.cli import app as cli
from nextoffer.cli.serve import proxy_options
from nextoffer.config import Settings
from nextoffer.domain.errors import BusyError, ConfigError, RateLimitedError
from nextoffer.domain.roles import Role
from nextoffer.ops.doctor import run_checks
from nextoffer.serving.login_throttle import LoginThrottle
from nextoffer.serving.password_gate import HashGate
from nextoffer.serving.tokens import resolve_jwt_secret
from nextoffer.serving.users import create_user
from nextoffer.serving.weak_secrets import weakness
from nextoffer.store import Engine
from nextoffer.store.engine import make_engine
from nextoffer.store.migrate import upgrade
from tests.conftest import require_service

# MLflow's own SQLAlchemy models use a deprecated loader; nothing we can act on.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy")

PASSWORD = "correct horse battery staple"
# The development secret of deploy/secrets/generate.sh --dev: public, so refused.
DEV_SECRET = "dev-jwt-secret-not-secret-at-least-32-chars"
HOME, OTHER, THIRD = "10.0.0.1", "10.0.0.2", "10.0.0.3"
SESSION_COOKIE = "nextoffer_console"
_LOGIN_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Site:
    """The app in process, a client at HOME, and the fake clock of its login throttle."""

    app: FastAPI
    client: TestClient
    clock: Clock
    settings: Settings
    engine: Engine
    cache: MemoryCache

    def at(self, address: str) -> TestClient:
        """A client calling from `address` (no lifespan of its own: the app is running)."""
        return TestClient(self.app, client=(address, 50000), follow_redirects=False)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("logins")
    engine = make_engine(f"sqlite:///{tmp / 'nextoffer.db'}")
    upgrade(engine)
    for name in ("alice", "bob", "carol"):
        create_user(engine, name, PASSWORD, Role.VIEWER)
    settings = Settings(
        database_url=f"sqlite:///{tmp / 'nextoffer.db'}",
        var_dir=tmp / "var",
        registry_uri=f"sqlite:///{tmp / 'mlflow.db'}",
        artifacts_url=f"file://{tmp / 'artifacts'}",
        console_secure_cookies=False,
        rate_limit_per_minute=0,
        otlp_endpoint="",
    )
    cache = MemoryCache()
    app = create_app(settings, engine=engine, cache=cache)
    clock = Clock()
    app.state.platform.logins.throttle.clock = clock
    try:
        with TestClient(app, client=(HOME, 50000), follow_redirects=False) as client:
            yield Site(app, client, clock, settings, engine, cache)
    finally:
        engine.dispose()


def login(client: TestClient, username: str, password: str) -> httpx.Response:
    body = {"username": username, "password": password}
    response: httpx.Response = client.post("/v1/auth/token", json=body)
    return response


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def console_login(client: TestClient, username: str, password: str) -> httpx.Response:
    form = client.get("/login")
    token = _LOGIN_TOKEN.search(form.text)
    assert token, form.text
    form_data = {"username": username, "password": password, "csrf_token": token[1], "next": "/"}
    response: httpx.Response = client.post("/login", data=form_data)
    return response


# --- backoff per (username, address) ----------------------------------------------------


def test_wrong_guesses_back_off_exponentially_while_other_users_and_addresses_log_in(
    site: Site,
) -> None:
    home, other = site.client, site.at(OTHER)
    for _ in range(5):
        assert "wrong username or password" in problem(login(home, "alice", "guess"), 401)["detail"]
    # The sixth wrong guess is still checked, and locks the pair for 1 s.
    problem(login(home, "alice", "guess"), 401)

    waits = []
    for _ in range(3):
        # Even the right password is refused while locked, before any hashing.
        locked = login(home, "alice", PASSWORD)
        body = problem(locked, 429)
        assert body["type"].endswith("rate-limited") and "wrong passwords" in body["detail"]
        waits.append(int(locked.headers["retry-after"]))
        assert f"try again in {waits[-1]} s" in body["detail"]
        site.clock.now += waits[-1]
        # The lock is over: one more wrong guess is checked and locks for twice as long.
        problem(login(home, "alice", "guess"), 401)
    assert waits == [1, 2, 4]

    # Meanwhile another user from the same address and the same user from another address
    # log in: nobody else is locked out.
    assert login(home, "bob", PASSWORD).status_code == 200
    assert login(other, "alice", PASSWORD).json()["role"] == "viewer"

    # The console draws on the same backoff, with Retry-After on its page.
    page = console_login(home, "alice", PASSWORD)
    assert page.status_code == 429 and page.headers["retry-after"] == "8"
    assert "too many wrong passwords" in page.text
    assert SESSION_COOKIE not in page.cookies

    site.clock.now += 7
    assert login(home, "alice", PASSWORD).headers["retry-after"] == "1"
    site.clock.now += 1
    assert login(home, "alice", PASSWORD).status_code == 200
    # A success forgets the pair's failures: the next wrong guess locks nothing.
    problem(login(home, "alice", "guess"), 401)
    assert login(home, "alice", PASSWORD).status_code == 200


def _throttle(cache: Any = None) -> tuple[LoginThrottle, Clock]:
    clock = Clock()
    return LoginThrottle(cache or MemoryCache(), free=5, cap_s=900, clock=clock), clock


def _refused(throttle: LoginThrottle, username: str, address: str) -> int:
    with pytest.raises(RateLimitedError) as refused:
        throttle.check(username, address)
    return refused.value.retry_after_s


def test_no_one_locks_a_named_user_out_for_long(site: Site) -> None:
    throttle, clock = _throttle()
    throttle.succeeded("dora", "192.0.2.7")  # dora's usual address
    # Guesses at dora's password from 40 addresses, one each: no pair is over its allowance,
    # the username is, with a lock capped at one minute.
    for i in range(40):
        throttle.failed("Dora", f"198.51.100.{i}")
    assert _refused(throttle, "dora", "198.51.100.3") == 60
    assert _refused(throttle, "dora", "203.0.113.9") == 60  # a new address waits too
    throttle.check("dora", "192.0.2.7")  # dora from her usual address gets in all along
    clock.now += 60
    throttle.check("dora", "203.0.113.9")
    assert throttle.scopes["user"].lock_s(10_000) == 60
    assert throttle.scopes["pair"].lock_s(10_000) == 900


def test_one_address_cannot_lock_out_everyone_behind_it(site: Site) -> None:
    throttle, _clock = _throttle()
    throttle.succeeded("erin", "192.0.2.1")  # the office's shared address
    # Someone in the office sprays one guess at each of 60 usernames.
    for i in range(60):
        throttle.failed(f"user{i}", "192.0.2.1")
    assert _refused(throttle, "user70", "192.0.2.1") == 2 ** (60 - 50 - 1)
    throttle.check("erin", "192.0.2.1")  # who logged in from there before still can
    throttle.check("user1", "198.51.100.1")  # and the usernames from elsewhere


@pytest.mark.integration
def test_every_replica_sees_the_backoff_through_redis() -> None:
    require_service("Redis", "127.0.0.1", 6379)
    url = "redis://127.0.0.1:6379/14"  # a database no other test uses
    first, second = RedisCache(url), RedisCache(url)
    try:
        one, _ = _throttle(first)
        two, _ = _throttle(second)
        user = f"u{uuid.uuid4().hex[:8]}"
        for _ in range(6):
            one.failed(user, HOME)
        assert _refused(two, user, HOME) == 1
        two.check(user, OTHER)
        two.succeeded(user, HOME)
        one.check(user, HOME)
    finally:
        first.delete_prefix("login:")
        first.close()
        second.close()


# --- the hashing queue ------------------------------------------------------------------


def test_a_login_waiting_too_long_for_a_password_check_gets_503_with_retry_after(
    site: Site,
) -> None:
    gate = HashGate(1, 0.2)
    release = threading.Event()

    async def two_logins() -> BusyError:
        async with anyio.create_task_group() as group:
            group.start_soon(gate.run, release.wait)  # holds the only slot
            await anyio.sleep(0.05)
            with pytest.raises(BusyError) as busy:
                await gate.run(lambda: None)
            assert gate.in_flight == 1 and gate.waiting == 0
            release.set()
        return busy.value

    # In a thread of its own: a session-wide Playwright (sync API) keeps an event loop
    # running in the main thread for the rest of the test session.
    with ThreadPoolExecutor(1) as pool:
        refused = pool.submit(anyio.run, two_logins).result()
    assert refused.retry_after_s == 1 and "password checks" in str(refused)
    assert gate.peak == 1 and gate.in_flight == 0

    # Through the API: a problem document with Retry-After, not a hang or a 500.
    logins = site.app.state.platform.logins
    full, logins.gate = logins.gate, gate
    release.clear()
    try:
        holder = threading.Thread(target=anyio.run, args=(gate.run, release.wait))
        holder.start()
        time.sleep(0.1)
        answer = login(site.at("10.0.0.9"), "bob", PASSWORD)
        release.set()
        holder.join()
    finally:
        logins.gate = full
    body = problem(answer, 503)
    assert body["type"].endswith("busy") and answer.headers["retry-after"] == "1"


# --- logout -----------------------------------------------------------------------------


def test_logout_revokes_the_session_on_every_replica(site: Site) -> None:
    client = site.at(THIRD)
    assert console_login(client, "carol", PASSWORD).status_code == 303
    cookie = client.cookies[SESSION_COOKIE]
    # Another replica: its own app, the same database, cache and secret.
    replica = create_app(site.settings, engine=site.engine, cache=site.cache)
    copied = TestClient(replica, follow_redirects=False, cookies={SESSION_COOKIE: cookie})
    assert copied.get("/customers").status_code == 200
    page = client.get("/customers")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf, page.text

    out = client.post("/logout", data={"csrf_token": csrf[1]})
    assert out.status_code == 303 and out.headers["location"] == "/login"

    # The copied cookie is dead everywhere, not only in the browser that logged out.
    for app in (site.app, replica):
        stolen = TestClient(app, follow_redirects=False, cookies={SESSION_COOKIE: cookie})
        answer = stolen.get("/customers")
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
    # Logging in again gives a new session that works.
    assert console_login(client, "carol", PASSWORD).status_code == 303
    assert client.cookies[SESSION_COOKIE] != cookie
    assert client.get("/customers").status_code == 200


# --- proxies and secrets ----------------------------------------------------------------


def test_forwarded_headers_are_believed_from_named_proxies_only() -> None:
    assert proxy_options(Settings()) == {"proxy_headers": False, "forwarded_allow_ips": ""}
    named = Settings(forwarded_allow_ips=" 172.30.0.10 , 10.1.0.0/16")
    assert proxy_options(named) == {
        "proxy_headers": True,
        "forwarded_allow_ips": "172.30.0.10,10.1.0.0/16",
    }


def test_known_and_weak_secrets_are_refused_unless_for_development(tmp_path: Path) -> None:
    for weak in (DEV_SECRET, "s" * 16 + "0123456789abcdef" * 3, "ab" * 20, "0123456789" * 4):
        assert weakness(weak), weak
        with pytest.raises(ConfigError, match="NEXTOFFER_ALLOW_INSECURE_SECRETS"):
            resolve_jwt_secret(Settings(var_dir=tmp_path, jwt_secret=weak))
        allowed = Settings(var_dir=tmp_path, jwt_secret=weak, allow_insecure_secrets=True)
        assert resolve_jwt_secret(allowed) == weak
    # A weak key put into VAR_DIR/secrets by hand is refused too.
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "jwt_secret").write_text("x" * 40)
    with pytest.raises(ConfigError, match="different characters"):
        resolve_jwt_secret(Settings(var_dir=tmp_path))

    env = {"NEXTOFFER_JWT_SECRET": DEV_SECRET, "NEXTOFFER_VAR_DIR": str(tmp_path / "w")}
    for command in (["serve"], ["worker"], ["beat"]):
        done = CliRunner().invoke(cli, command, env=env)
        assert done.exit_code != 0, command
        assert "NEXTOFFER_JWT_SECRET is a value published with nextoffer" in done.output
        assert "Refusing to start" in done.output

    settings = Settings(
        jwt_secret=DEV_SECRET,
        var_dir=tmp_path / "w",
        database_url=f"sqlite:///{tmp_path / 'w.db'}",
        registry_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    [check] = [c for c in run_checks(settings) if c.name == "secrets"]
    assert not check.ok and "NEXTOFFER_JWT_SECRET is a value published" in check.detail
    allowed = settings.model_copy(update={"allow_insecure_secrets": True})
    [check] = [c for c in run_checks(allowed) if c.name == "secrets"]
    assert check.ok and check.detail.startswith("allowed for development")
