"""The Python client without a server: Retry-After in both forms, bounded jittered retries,
connection errors retried only when repeatable, typed problems, and no server imports."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from nextoffer.client import (
    Client,
    ClientError,
    NotFoundError,
    ProblemError,
    RateLimitedError,
    RetryPolicy,
    UnavailableError,
)
from nextoffer.client.calls import Call
from nextoffer.client.retry import parse_retry_after

NOW = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)
HEALTHY = {"status": "ok"}


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert parse_retry_after("7", NOW) == 7.0
    later = format_datetime(NOW + timedelta(seconds=42), usegmt=True)
    assert parse_retry_after(later, NOW) == 42.0
    earlier = format_datetime(NOW - timedelta(seconds=5), usegmt=True)
    assert parse_retry_after(earlier, NOW) == 0.0
    assert parse_retry_after(None, NOW) is None
    assert parse_retry_after("soon", NOW) is None


def test_waits_back_off_exponentially_with_full_jitter_and_stop() -> None:
    top = RetryPolicy(max_attempts=5, base_s=0.5, cap_s=3.0, draw=lambda: 0.999999)
    waits = [top.wait_s(attempt, None) for attempt in range(1, 6)]
    assert waits[:4] == pytest.approx([0.5, 1.0, 2.0, 3.0], rel=1e-5)  # capped at 3
    assert waits[4] is None  # five attempts made: stop
    assert RetryPolicy(draw=lambda: 0.0).wait_s(1, None) == 0.0  # jitter reaches zero
    honour = RetryPolicy(jitter_s=0.5, max_wait_s=30, draw=lambda: 0.5)
    assert honour.wait_s(1, 10.0) == 10.25
    assert honour.wait_s(1, 31.0) is None  # longer than we are willing to wait


def scripted(*answers: httpx.Response | Exception) -> tuple[httpx.MockTransport, list[str]]:
    """A transport that answers each request with the next of `answers`, logging paths."""
    queue = list(answers)
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.MockTransport(handle), seen


def problem(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status,
        headers={"Content-Type": "application/problem+json", **(headers or {})},
        json={
            "type": f"https://nextoffer.dev/problems/{status}",
            "title": "Too Many Requests" if status == 429 else "Service Unavailable",
            "status": status,
            "detail": "slow down",
            "request_id": "req-1",
        },
    )


def test_429_and_503_are_retried_after_the_servers_retry_after() -> None:
    date = format_datetime(datetime.now(UTC) + timedelta(seconds=3), usegmt=True)
    transport, seen = scripted(
        problem(429, {"Retry-After": "2"}),
        problem(503, {"Retry-After": date}),
        httpx.Response(200, json=HEALTHY),
    )
    slept: list[float] = []
    policy = RetryPolicy(jitter_s=0.0)
    with Client(
        "http://api", api_key="k", transport=transport, sleep=slept.append, retry=policy
    ) as c:
        assert c.health().status == "ok"
    assert len(seen) == 3
    assert slept[0] == 2.0
    assert 1.0 <= slept[1] <= 3.0  # the HTTP date, a moment later


def test_attempts_are_bounded_and_the_last_problem_is_raised_typed() -> None:
    transport, seen = scripted(*[problem(429, {"Retry-After": "1"})] * 3)
    slept: list[float] = []
    policy = RetryPolicy(max_attempts=3, jitter_s=0.0)
    with (
        Client("http://api", token="t", transport=transport, sleep=slept.append, retry=policy) as c,
        pytest.raises(RateLimitedError) as raised,
    ):
        c.health()
    assert len(seen) == 3 and slept == [1.0, 1.0]
    error = raised.value
    assert (error.status, error.title, error.detail, error.request_id) == (
        429,
        "Too Many Requests",
        "slow down",
        "req-1",
    )
    assert error.retry_after_s == 1.0


def test_a_503_without_retry_after_backs_off_then_raises_unavailable() -> None:
    transport, _ = scripted(problem(503), problem(503))
    slept: list[float] = []
    policy = RetryPolicy(max_attempts=2, base_s=0.25, draw=lambda: 0.5)
    with (
        Client(
            "http://api", api_key="k", transport=transport, sleep=slept.append, retry=policy
        ) as c,
        pytest.raises(UnavailableError),
    ):
        c.health()
    assert slept == [0.125]


def test_connection_errors_are_retried_only_for_repeatable_calls() -> None:
    refused = httpx.ConnectError("connection refused")
    transport, seen = scripted(refused, httpx.Response(200, json=HEALTHY), refused)
    slept: list[float] = []
    with Client("http://api", api_key="k", transport=transport, sleep=slept.append) as c:
        assert c.health().status == "ok"  # a GET: repeated
        with pytest.raises(ClientError):
            c.send(Call("POST", "/v1/once", json={}, idempotent=False))
    assert seen == ["GET /health", "GET /health", "POST /v1/once"]
    assert len(slept) == 1


def test_other_errors_are_raised_at_once_typed() -> None:
    transport, seen = scripted(
        httpx.Response(
            404,
            headers={"Content-Type": "application/problem+json"},
            json={"title": "Not Found", "status": 404, "detail": "no customer 'X'"},
        ),
        httpx.Response(500, text="boom", headers={"X-Request-ID": "abc"}),
    )
    with Client("http://api", api_key="k", transport=transport, sleep=lambda _s: None) as c:
        with pytest.raises(NotFoundError, match="no customer"):
            c.offers("X")
        with pytest.raises(ProblemError) as raised:
            c.offers("Y")
    assert raised.value.status == 500 and raised.value.request_id == "abc"
    assert seen == ["GET /v1/customers/X/offers", "GET /v1/customers/Y/offers"]


def test_credentials_go_in_the_right_header() -> None:
    captured: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        captured.append(request)
        return httpx.Response(200, json=HEALTHY)

    with Client("http://api", api_key="key-1", transport=httpx.MockTransport(handle)) as c:
        c.health()
    with Client("http://api", token="tok-1", transport=httpx.MockTransport(handle)) as c:
        c.health()
    assert captured[0].headers["X-API-Key"] == "key-1"
    assert captured[1].headers["Authorization"] == "Bearer tok-1"
    with pytest.raises(ValueError, match="exactly one"):
        Client("http://api")


def test_the_client_imports_no_server_code() -> None:
    code = (
        "import sys, nextoffer.client\n"
        "heavy = {'fastapi', 'starlette', 'sqlalchemy', 'pandas', 'numpy', 'nextoffer.api',"
        " 'nextoffer.store', 'nextoffer.serving'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
