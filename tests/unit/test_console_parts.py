"""The console's parts without a server: SVG charts, session and CSRF tokens, alerts, memo."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from sqlalchemy import create_engine
from starlette.requests import Request
from starlette.responses import Response

from nextoffer.domain.roles import Role
from nextoffer.serving.accounts import Principal
from nextoffer.serving.tokens import issue_token
from nextoffer.store.reads.customers import name_variants
from nextoffer.web.alerts import open_alerts
from nextoffer.web.auth import ConsoleAuth, console_key, safe_next
from nextoffer.web.charts import Bar, Series, bar_chart, line_chart
from nextoffer.web.console import Memo, make_templates

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup: str) -> ElementTree.Element:
    """The chart as XML: fails on anything that is not well-formed."""
    return ElementTree.fromstring(str(markup))  # noqa: S314 - our own markup, not input


# --- charts ---------------------------------------------------------------------------


def test_line_chart_breaks_lines_at_gaps_and_draws_lone_points() -> None:
    chart = parse(
        line_chart(
            ["a", "b", "c", "d", "e"],
            [Series("rate", [0.1, 0.2, None, 0.4, None])],
            title="rates",
        )
    )
    polylines = chart.findall(f"{SVG}polyline")
    assert len(polylines) == 1
    assert len(polylines[0].get("points", "").split()) == 2  # a and b, then the gap
    assert len(chart.findall(f"{SVG}circle")) == 1  # d stands alone
    assert chart.findtext(f"{SVG}title") == "rates"


def test_line_chart_axis_starts_at_zero_and_tops_at_a_round_number() -> None:
    chart = parse(line_chart(["x", "y"], [Series("n", [3.0, 7.3])], title="t"))
    labels = [t.text for t in chart.findall(f"{SVG}text") if t.get("class") == "axis"]
    assert labels[:5] == ["0", "2.5", "5", "7.5", "10"]


def test_chart_text_is_escaped() -> None:
    hostile = '<script>alert("x")</script>'
    for markup in (
        line_chart([hostile], [Series(hostile, [1.0])], title=hostile),
        bar_chart([Bar(hostile, 1.0, note=hostile)], title=hostile),
    ):
        assert "<script>" not in str(markup)
        parse(markup)  # still well-formed XML


def test_bars_over_the_threshold_are_marked() -> None:
    chart = parse(
        bar_chart(
            [Bar("stable", 0.05), Bar("drifted", 0.31)],
            title="psi",
            threshold=0.2,
            threshold_label="threshold 0.2",
        )
    )
    classes = [r.get("class") for r in chart.findall(f"{SVG}rect")]
    assert classes == ["bar", "bar over"]
    widths = [float(r.get("width", "0")) for r in chart.findall(f"{SVG}rect")]
    assert widths[1] / widths[0] == pytest.approx(
        0.31 / 0.05, rel=0.01
    )  # widths are rounded to 0.1 px
    assert chart.find(f"{SVG}line[@class='threshold']") is not None


# --- sign-in --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/customers?q=a", "/customers?q=a"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
def test_only_local_paths_are_followed_after_login(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def request_with(cookies: dict[str, str]) -> Request:
    header = "; ".join(f"{k}={v}" for k, v in cookies.items())
    return Request({"type": "http", "headers": [(b"cookie", header.encode())]})


@pytest.fixture
def auth(tmp_path: Path) -> ConsoleAuth:
    # The token verifier looks the account up; an empty database means "no such user",
    # which is enough for the checks below that do not need an account.
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    return ConsoleAuth(engine, "s" * 64, secure=True, ttl_s=600, cache_s=0)


def test_console_key_is_not_the_jwt_secret_and_api_tokens_are_no_sessions(
    auth: ConsoleAuth,
) -> None:
    secret = "s" * 64
    assert console_key(secret) != secret
    assert console_key(secret) != console_key("t" * 64)
    api_token, _ = issue_token(Principal("user", "ann", Role.ADMIN), secret, 600)
    request = request_with({auth.session_cookie: api_token})
    assert auth.session(request) is None


def test_secure_cookies_use_the_host_prefix_and_flags(auth: ConsoleAuth) -> None:
    assert auth.session_cookie == "__Host-nextoffer_console"
    response = Response()
    auth.set_session(response, "token")
    header = response.headers["set-cookie"]
    assert header.startswith("__Host-nextoffer_console=token;")
    for flag in ("HttpOnly", "Secure", "SameSite=lax", "Path=/", "Max-Age=600"):
        assert flag in header


def test_csrf_tokens_differ_per_session_and_login_tokens_need_their_cookie(
    auth: ConsoleAuth,
) -> None:
    assert auth.csrf_for("a") != auth.csrf_for("b")
    assert re.fullmatch(r"[0-9a-f]{64}", auth.csrf_for("a"))
    nonce, token = auth.new_login_nonce()
    assert auth.login_form_ok(request_with({auth.login_cookie: nonce}), token)
    assert not auth.login_form_ok(request_with({}), token)
    assert not auth.login_form_ok(request_with({auth.login_cookie: nonce + "x"}), token)
    assert not auth.login_form_ok(request_with({auth.login_cookie: nonce}), "")


def test_flash_messages_are_signed(auth: ConsoleAuth) -> None:
    response = Response()
    auth.flash(response, "Stopped it.", "ok")
    value = response.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    flash = auth.read_flash(request_with({auth.flash_cookie: value}))
    assert flash is not None and (flash.text, flash.kind) == ("Stopped it.", "ok")
    assert auth.read_flash(request_with({auth.flash_cookie: "forged"})) is None


# --- alerts ---------------------------------------------------------------------------


@pytest.fixture
def alertmanager() -> Iterator[tuple[str, list[str], list[Any]]]:
    """A fake Alertmanager whose answer a test sets; returns (url, paths asked, answer)."""
    paths: list[str] = []
    answer: list[Any] = [[]]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            paths.append(self.path)
            body = json.dumps(answer[0]).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", paths, answer
    finally:
        server.shutdown()


def test_alerts_open_ones_only_most_severe_first(
    alertmanager: tuple[str, list[str], list[Any]],
) -> None:
    url, paths, answer = alertmanager
    answer[0] = [
        {"labels": {"alertname": "Slow", "severity": "warning"}, "status": {"state": "active"}},
        {
            "labels": {"alertname": "Down", "severity": "critical"},
            "annotations": {"summary": "API down"},
            "startsAt": "2026-11-23T10:00:00Z",
            "status": {"state": "active"},
        },
        {"labels": {"alertname": "Quiet"}, "status": {"state": "suppressed"}},
    ]
    found = open_alerts(url + "/")
    assert found.state == "ok"
    assert [a.name for a in found.alerts] == ["Down", "Slow"]
    assert found.alerts[0].summary == "API down"
    assert found.alerts[0].starts_at == "2026-11-23 10:00:00"
    assert paths == ["/api/v2/alerts?active=true"]


def test_alerts_not_configured_unreachable_or_not_alertmanager(
    alertmanager: tuple[str, list[str], list[Any]],
) -> None:
    url, _, answer = alertmanager
    assert open_alerts("").state == "not configured"
    answer[0] = {"not": "a list"}
    assert open_alerts(url).state == "unreachable"
    gone = open_alerts("http://user:secret@127.0.0.1:9/", timeout_s=0.5)
    assert gone.state == "unreachable"
    assert "secret" not in gone.detail
    assert open_alerts("file:///etc/passwd").state == "unreachable"


# --- the rest -------------------------------------------------------------------------


def test_memo_keeps_a_value_for_its_ttl() -> None:
    now = [0.0]
    memo = Memo(30.0, clock=lambda: now[0])
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    assert memo.get("k", compute) == 1
    now[0] = 29.0
    assert memo.get("k", compute) == 1
    now[0] = 31.0
    assert memo.get("k", compute) == 2


def test_name_variants_cover_the_usual_cases_once_each() -> None:
    assert name_variants("  hana   hu ") == ["hana hu", "Hana Hu", "HANA HU", "Hana hu"]
    assert name_variants("McD") == ["McD", "mcd", "Mcd", "MCD"]
    assert name_variants("   ") == []


def test_templates_escape_what_they_show() -> None:
    templates = make_templates()
    env = templates.env
    rendered = env.from_string("{{ x }} {{ v|pct(2) }} {{ n|num }}").render(
        x="<b>", v=0.123456, n=1234567
    )
    assert rendered == "&lt;b&gt; 12.35 % 1,234,567"
