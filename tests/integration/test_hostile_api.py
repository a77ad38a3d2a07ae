"""Hostile input at the API and the console, in process, on SQLite and PostgreSQL.

Each repro of issue 17 (M1 and the low ones) is sent to one app per backend: NUL, control
characters, invalid Unicode and over-long text in bodies, query strings, form posts and
paths; an event channel outside the import vocabulary; an entity that would have been
echoed into a download's file name; an absurd model version; bad job parameters; a
trailing-slash redirect under a forged Host. Every answer is a 4xx: a problem document
(naming what was refused) at the API, an HTML page at the console. None is a 5xx, none
drops the connection, and nothing reaches the database.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import Engine, func, select

from nextoffer.api.redirects import relative
from nextoffer.asgi import create_app
from nextoffer.cache.memory import MemoryCache
from nextoffer.config import Settings
from nextoffer.domain.roles import Role
from nextoffer.jobs.catalogue import JOBS
from nextoffer.jobs.params import JOB_PARAMS
from nextoffer.serving.api_keys import create_api_key
from nextoffer.serving.users import create_user
from nextoffer.store.engine import make_engine
from nextoffer.store.migrate import upgrade
from nextoffer.store.schema import Event
from tests.conftest import fresh_postgres_database
from tests.integration.experiment_world import add_customers, add_products

PASSWORD = "hostile-operator-password"
CUSTOMER, PRODUCT = "C0001", "P1"
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
BAD_TEXT = {
    "nul": "a\x00b",
    "newline": "a\nb",
    "escape": "a\x1b[31mb",
    "c1": "a\x85b",
    "surrogate": "a\ud800b",
}
"""Text no value may hold: NUL, a line break, a terminal escape, a C1 control, a lone half
of a UTF-16 pair (invalid Unicode)."""
BAD_QUERY = {
    "nul": "a%00b",
    "newline": "a%0D%0Ab",
    "escape": "a%1Bb",
    "c1": "a%C2%85b",
}
"""The same, percent-encoded in a URL (a lone surrogate cannot be: it decodes to U+FFFD)."""


@dataclass
class Site:
    """One app on one backend: its client, keys and database."""

    backend: str
    client: TestClient
    keys: dict[str, str]
    engine: Engine

    def headers(self, role: str = "admin") -> dict[str, str]:
        """The X-API-Key header of a key with `role`."""
        return {"X-API-Key": self.keys[role]}

    def login(self) -> None:
        """Sign the console client in (a session cookie on `client`), unless it is."""
        form = self.client.get("/login", follow_redirects=False)
        if form.status_code == 303:
            return
        token = _TOKEN.search(form.text)
        assert token
        done = self.client.post(
            "/login",
            data={"username": "operator1", "password": PASSWORD, "csrf_token": token[1]},
            follow_redirects=False,
        )
        assert done.status_code == 303, done.text

    def post_json(self, path: str, body: Any, role: str | None = None) -> Response:
        """POST `body` as ASCII JSON, as a hostile client would send it.

        Lone surrogates travel as `\\ud800` escapes (httpx's own encoder cannot send them).
        """
        headers = {"content-type": "application/json", **(self.headers(role) if role else {})}
        sent: Response = self.client.post(path, content=json.dumps(body), headers=headers)
        return sent

    def events(self) -> int:
        """Events stored."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(Event)).scalar_one())


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)]
)
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp(f"hostile-{request.param}")
    with ExitStack() as stack:
        if request.param == "postgres":
            database_url = stack.enter_context(fresh_postgres_database("nextoffer_hostile"))
        else:
            database_url = f"sqlite:///{tmp / 'nextoffer.db'}"
        yield from _site(request.param, tmp, database_url)


def _site(backend: str, tmp: Path, database_url: str) -> Iterator[Site]:
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        add_products(engine)
        add_customers(engine, [CUSTOMER, "C0002"])
        keys = {
            role: create_api_key(engine, f"hostile {role}", Role(role))[1]
            for role in ("viewer", "writer", "operator", "admin")
        }
        create_user(engine, "operator1", PASSWORD, Role.OPERATOR)
        settings = Settings(
            database_url=database_url,
            var_dir=tmp / "var",
            registry_uri=f"sqlite:///{tmp / 'mlflow.db'}",
            artifacts_url=f"file://{tmp / 'artifacts'}",
            console_secure_cookies=False,
            rate_limit_per_minute=0,
            otlp_endpoint="",
        )
        app = create_app(settings, engine=engine, cache=MemoryCache())
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Site(backend, client, keys, engine)
    finally:
        engine.dispose()


def problem(response: Response, status: int = 422) -> dict[str, Any]:
    """The problem document of a refused request (asserted: status, media type, fields)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["request_id"]
    return body


def refused_page(response: Response) -> str:
    """The console's page for refused input: a 4xx HTML page saying so."""
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("text/html")
    return response.text


def event(**fields: Any) -> dict[str, Any]:
    """A valid accept of P1 by C0001, with `fields` replaced."""
    return {"customer_id": CUSTOMER, "event_type": "offer_accept", "product_id": PRODUCT, **fields}


# --- M1: control characters and invalid Unicode -------------------------------------------


@pytest.mark.parametrize("kind", BAD_TEXT)
def test_auth_token_username_with_control_characters_is_a_422_problem(
    site: Site, kind: str
) -> None:
    body = problem(site.post_json("/v1/auth/token", {"username": BAD_TEXT[kind], "password": "x"}))
    assert body["type"].endswith("/validation-error")
    # pydantic itself refuses a lone surrogate ("unable to parse raw data as a unicode string")
    said = "unicode string" if kind == "surrogate" else "control character"
    assert "username" in body["detail"] and said in body["detail"]


@pytest.mark.parametrize("field", ["session_id", "channel", "variant", "experiment_id"])
@pytest.mark.parametrize("kind", ["nul", "escape", "surrogate"])
def test_event_text_with_control_characters_is_a_422_problem(
    site: Site, field: str, kind: str
) -> None:
    before = site.events()
    response = site.post_json("/v1/events", event(**{field: BAD_TEXT[kind]}), "writer")
    body = problem(response)
    assert field in body["detail"]
    assert site.events() == before


def test_event_channel_outside_the_import_vocabulary_is_a_422_problem(site: Site) -> None:
    body = problem(
        site.client.post("/v1/events", json=event(channel="carrier-pigeon"), headers=site.headers())
    )
    assert "channel" in body["detail"] and "call_center" in body["detail"]
    stored = site.client.post(
        "/v1/events",
        json=event(channel="call_center", event_type="offer_click"),
        headers=site.headers(),
    )
    assert stored.status_code == 201, stored.text
    assert stored.json()["stored"] == 1


@pytest.mark.parametrize("kind", BAD_QUERY)
def test_products_category_with_control_characters_is_a_422_problem(site: Site, kind: str) -> None:
    body = problem(
        site.client.get(f"/v1/products?category={BAD_QUERY[kind]}", headers=site.headers())
    )
    assert body["type"].endswith("/bad-encoding")
    assert "category" in body["detail"]


def test_overlong_query_text_is_a_422_problem(site: Site) -> None:
    body = problem(
        site.client.get("/v1/products", params={"category": "x" * 5000}, headers=site.headers())
    )
    assert "category" in body["detail"]


def test_control_characters_in_a_path_are_refused(site: Site) -> None:
    response = site.client.get("/v1/customers/C%00001/offers", headers=site.headers())
    body = problem(response)
    assert body["type"].endswith("/bad-encoding")


@pytest.mark.parametrize("kind", BAD_QUERY)
def test_console_login_with_control_characters_is_a_4xx_page(site: Site, kind: str) -> None:
    token = _TOKEN.search(site.client.get("/login").text)
    assert token
    response = site.client.post(
        "/login",
        content=f"username=op{BAD_QUERY[kind]}&password=x&csrf_token={token[1]}",
        headers={"content-type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    page = refused_page(response)
    assert "username" in page and "control character" in page


@pytest.mark.parametrize(
    "url", ["/customers?q={}", "/data?entity={}", "/data?job={}", "/data/quarantine.csv?entity={}"]
)
def test_console_query_with_control_characters_is_a_4xx_page(site: Site, url: str) -> None:
    site.login()
    for text in BAD_QUERY.values():
        page = refused_page(site.client.get(url.format(text), follow_redirects=False))
        assert "control character" in page


# --- low: downloads, promotions, jobs, redirects -------------------------------------------


def test_quarantine_csv_entity_is_never_echoed_into_the_file_name(site: Site) -> None:
    site.login()
    refused = site.client.get("/data/quarantine.csv", params={"entity": "a.bat"})
    page = refused_page(refused)
    assert "customers" in page  # the entities there are
    assert "content-disposition" not in refused.headers
    good = site.client.get("/data/quarantine.csv", params={"entity": "events"})
    assert good.status_code == 200
    assert good.headers["content-disposition"] == 'attachment; filename="quarantine-events.csv"'


@pytest.mark.parametrize("version", [10**30, 2**63, 2**31, 123456])
def test_promoting_an_absurd_version_is_a_clean_4xx(site: Site, version: int) -> None:
    response = site.client.post(
        "/v1/models/offers/champion", json={"version": version}, headers=site.headers("admin")
    )
    assert 400 <= response.status_code < 500
    body = problem(response, response.status_code)
    assert "version" in body["detail"]
    assert "Traceback" not in body["detail"] and "mlflow" not in body["detail"].lower()


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"as_of": "yesterday"}, "as_of"),
        ({"as_of": 12}, "as_of"),
        ({"colour": "blue"}, "colour"),
        ({"models": ["offers", "horoscope"]}, "horoscope"),
        ({"as_of": "2026-01-01\x00"}, "as_of"),
    ],
)
def test_bad_job_parameters_are_refused_before_the_job_starts(
    site: Site, params: dict[str, Any], named: str
) -> None:
    kind = "training" if "models" in params else "features"
    response = site.client.post(
        "/v1/jobs", json={"kind": kind, "params": params}, headers=site.headers("operator")
    )
    body = problem(response)
    assert named in body["detail"]


def test_trailing_slash_redirect_never_names_the_callers_host(site: Site) -> None:
    response = site.client.get(
        "/v1/products/", headers={**site.headers(), "host": "evil.example"}, follow_redirects=False
    )
    location = response.headers.get("location", "")
    assert "evil.example" not in location
    if response.is_redirect:
        assert location.startswith("/v1/products")


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        (b"http://evil.example/v1/products", b"/v1/products"),
        (b"https://evil.example//other.example/x?a=1", b"/other.example/x?a=1"),
        (b"//other.example/x", b"/x"),
        (b"/login?next=%2F", b"/login?next=%2F"),
    ],
)
def test_redirects_stay_on_this_site(location: bytes, expected: bytes) -> None:
    assert relative(location) == expected


def test_every_job_says_which_parameters_it_takes() -> None:
    # A job added to the catalogue without an entry would take any parameter unchecked.
    assert set(JOB_PARAMS) == set(JOBS)
