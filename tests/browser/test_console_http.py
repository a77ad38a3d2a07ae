"""The console's guards over plain HTTP (httpx, no browser): sign-in redirects, CSRF, roles.

The page and form lists come from the console's own routers, so a page added later is
covered without touching this file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import func, select

from nextoffer.store.schema import Event, Experiment, JobRun, Product
from nextoffer.web.app import ROUTERS
from tests.browser.conftest import ConsoleWorld, password

OPEN = {"/login"}
ADMIN_ONLY = {"/audit"}
"""Pages a viewer is refused (403, saying which role they need)."""
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def console_routes(method: str) -> list[str]:
    """Path templates of the console's routes answering `method`."""
    return sorted(
        route.path
        for router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute) and method in route.methods and route.path not in OPEN
    )


def fill(template: str, world: ConsoleWorld, experiment_id: str) -> str:
    """A concrete path for a route template, with ids that exist in the world."""
    with world.engine.connect() as conn:
        product = conn.execute(select(Product.product_id).limit(1)).scalar_one()
    values = {
        "customer_id": world.take(1)[0],
        "product_id": product,
        "experiment_id": experiment_id,
        "kind": "churn",
    }
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)


@pytest.fixture(scope="module")
def experiment_id(world: ConsoleWorld) -> str:
    """A stopped experiment to open (created through the API)."""
    body = {
        "name": "http guards",
        "variants": [
            {"name": "control", "strategy": "segment_popular"},
            {"name": "treatment", "strategy": "champion"},
        ],
    }
    with world.api("operator") as api:
        created = api.post("/v1/experiments", json=body)
        assert created.status_code == 201, created.text
        found = str(created.json()["experiment_id"])
        assert api.post(f"/v1/experiments/{found}/stop").status_code == 200
    return found


@contextmanager
def sign_in(world: ConsoleWorld, role: str) -> Iterator[tuple[httpx.Client, str]]:
    """A client holding a console session of `role`, and the session's CSRF token."""
    with httpx.Client(base_url=world.url, follow_redirects=False, timeout=30) as client:
        yield client, _session_token(world, client, role)


def _session_token(world: ConsoleWorld, client: httpx.Client, role: str) -> str:
    form = client.get("/login")
    match = _TOKEN.search(form.text)
    assert match, "the login form has no CSRF token"
    done = client.post(
        "/login",
        data={
            "username": f"{role}1",
            "password": password(role),
            "csrf_token": match[1],
            "next": "/",
        },
    )
    assert done.status_code == 303, done.text
    page = client.get("/customers")
    assert page.status_code == 200
    token = _TOKEN.search(page.text)
    assert token, "a signed-in page has no CSRF token"
    return token[1]


def test_every_page_redirects_to_login_when_signed_out(
    world: ConsoleWorld, experiment_id: str
) -> None:
    pages = console_routes("GET")
    assert "/" in pages and "/data/quarantine.csv" in pages
    with httpx.Client(base_url=world.url, follow_redirects=False, timeout=30) as client:
        for template in pages:
            path = fill(template, world, experiment_id)
            answer = client.get(path)
            assert answer.status_code == 303, (path, answer.status_code)
            assert answer.headers["location"] == f"/login?next={quote(path, safe='/')}", path
        # A forged or stale cookie is no session either.
        client.cookies.set("nextoffer_console", "forged.token.value")
        assert client.get("/").status_code == 303
        # The stylesheet and script are public: the login page needs them.
        assert client.get("/static/console.css").status_code == 200


def test_signed_in_pages_answer(world: ConsoleWorld, experiment_id: str) -> None:
    with sign_in(world, "viewer") as (client, _):
        for template in console_routes("GET"):
            path = fill(template, world, experiment_id)
            answer = client.get(path)
            if template in ADMIN_ONLY:
                assert answer.status_code == 403, (path, answer.status_code)
                assert "needs the admin role" in answer.text
                continue
            assert answer.status_code == 200, (path, answer.text[:500])
            assert answer.headers["cache-control"] == "no-store"
            # The API's security headers cover the console too.
            assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    with sign_in(world, "admin") as (client, _):
        for template in ADMIN_ONLY:
            answer = client.get(template)
            assert answer.status_code == 200, (template, answer.text[:500])
            assert answer.headers["cache-control"] == "no-store"


def test_session_cookie_is_httponly_lax_and_no_api_token(world: ConsoleWorld) -> None:
    with sign_in(world, "viewer") as (client, _):
        cookie = client.cookies.get("nextoffer_console")
        assert cookie
        # Logging out takes a form with the token: a link (GET) cannot sign anyone out.
        assert client.get("/logout").status_code == 405
        assert client.get("/").status_code == 200
    # A fresh login, to read the Set-Cookie header itself.
    raw = httpx.Client(base_url=world.url, follow_redirects=False, timeout=30)
    with raw:
        token = _TOKEN.search(raw.get("/login").text)
        assert token
        done = raw.post(
            "/login",
            data={"username": "viewer1", "password": password("viewer"), "csrf_token": token[1]},
        )
        header = next(
            h for h in done.headers.get_list("set-cookie") if h.startswith("nextoffer_console=")
        )
        assert "HttpOnly" in header
        assert "SameSite=lax" in header
        assert "Path=/" in header
        # Signed with the console's own key: not a bearer token for the API.
        customer = world.take(1)[0]
        api = raw.get(
            f"/v1/customers/{customer}/offers", headers={"Authorization": f"Bearer {cookie}"}
        )
        assert api.status_code == 401


def state(world: ConsoleWorld) -> tuple[int, int, int, str]:
    """What a form could change: experiments, job runs, offer events, the churn champion."""
    with world.engine.connect() as conn:
        experiments = conn.execute(select(func.count()).select_from(Experiment)).scalar_one()
        runs = conn.execute(select(func.count()).select_from(JobRun)).scalar_one()
        events = conn.execute(select(func.count()).select_from(Event)).scalar_one()
    with world.api("operator") as api:
        champion = str(api.get("/v1/models").json()["champions"]["churn"])
    return experiments, runs, events, champion


def fields(world: ConsoleWorld, template: str) -> dict[str, str]:
    """Form fields for a console post that would be accepted with a valid token and role."""
    with world.engine.connect() as conn:
        product = conn.execute(select(Product.product_id).limit(1)).scalar_one()
    return {
        "/customers/{customer_id}/events": {"product_id": product, "event_type": "offer_accept"},
        "/experiments": {
            "name": "must not start",
            "variant_name": "control",
            "strategy": "control",
        },
        "/data/jobs": {"kind": "precompute"},
        "/models/{kind}/promote": {"version": "2", "reason": "must not happen"},
    }.get(template, {})


def test_form_posts_without_a_valid_csrf_token_are_refused(
    world: ConsoleWorld, experiment_id: str
) -> None:
    before = state(world)
    with sign_in(world, "admin") as (client, token):
        templates = console_routes("POST")
        assert len(templates) >= 6
        for template in templates:
            path, data = fill(template, world, experiment_id), fields(world, template)
            for bad in ({}, {"csrf_token": "0" * 64}, {"csrf_token": token[:-1]}):
                answer = client.post(path, data={**data, **bad})
                assert answer.status_code == 403, (path, bad, answer.status_code)
                assert "security token" in answer.text
        # The session survived all of it (logout is a form too, and it was refused).
        assert client.get("/").status_code == 200
    assert state(world) == before

    with httpx.Client(base_url=world.url, follow_redirects=False, timeout=30) as client:
        # The login form is protected too: no token, or a token without its cookie.
        data = {"username": "admin1", "password": password("admin")}
        assert client.post("/login", data=data).status_code == 403
        token = _TOKEN.search(client.get("/login").text)
        assert token
        client.cookies.clear()
        assert client.post("/login", data={**data, "csrf_token": token[1]}).status_code == 403


@pytest.mark.parametrize(
    ("role", "template", "needs"),
    [
        ("viewer", "/customers/{customer_id}/events", "writer"),
        ("writer", "/experiments", "operator"),
        ("viewer", "/data/jobs", "operator"),
        ("operator", "/models/{kind}/promote", "admin"),
        ("operator", "/models/{kind}/rollback", "admin"),
    ],
)
def test_roles_below_the_action_are_refused(
    world: ConsoleWorld, experiment_id: str, role: str, template: str, needs: str
) -> None:
    before = state(world)
    path = fill(template, world, experiment_id)
    with sign_in(world, role) as (client, token):
        answer = client.post(path, data={**fields(world, template), "csrf_token": token})
    assert answer.status_code == 403
    assert f"needs the {needs} role" in answer.text
    assert state(world) == before
