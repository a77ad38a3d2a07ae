"""The quickstart's stage table: seconds per stage from `make run`'s start to the first answer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from nextoffer.cli.stages import StageClock, answer_url, wait_for_first_answer


def rows(table: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split()[1:] for line in table.splitlines()[1:]}


def test_the_table_counts_every_stage_from_make_runs_start() -> None:
    started = time.time() - 10.0
    clock = StageClock(clock_start=started, install_done=started + 2.5)
    clock.lap("generate", at=started + 13.0)
    clock.lap("first", at=started + 14.3)
    table = clock.table()
    assert table.splitlines()[0].split() == ["stage", "seconds", "cpu", "s"]
    got = rows(table)
    assert list(got) == ["install", "start-up", "generate", "first", "total"]
    # make's install ran in other processes: its CPU is not ours to count.
    assert got["install"] == ["2.5", "–"]
    seconds = [float(got[stage][0]) for stage in ("install", "start-up", "generate", "first")]
    assert all(s >= 0 for s in seconds)
    assert float(got["total"][0]) == pytest.approx(14.3, abs=0.06)
    assert sum(seconds) == pytest.approx(14.3, abs=0.2)
    assert float(got["total"][1]) >= float(got["start-up"][1]) >= 0


def test_without_make_the_clock_starts_with_the_command() -> None:
    clock = StageClock()
    clock.lap("generate")
    assert list(rows(clock.table())) == ["generate", "total"]


def test_a_wildcard_bind_is_asked_on_loopback() -> None:
    assert answer_url("0.0.0.0", 8000, "C00000001") == (  # noqa: S104
        "http://127.0.0.1:8000/v1/customers/C00000001/offers"
    )
    assert answer_url("10.0.0.5", 9000, "C1") == "http://10.0.0.5:9000/v1/customers/C1/offers"


class _Starting(BaseHTTPRequestHandler):
    """503 for the first two requests (a server still loading), then 200 with the right key."""

    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("X-API-Key")))
        ready = len(self.seen) > 2 and self.headers.get("X-API-Key") == "k-1"
        self.send_response(200 if ready else 503)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def starting_server() -> Iterator[str]:
    _Starting.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Starting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield answer_url("127.0.0.1", server.server_address[1], "C00000001")
    finally:
        server.shutdown()
        server.server_close()


def test_the_first_answer_is_the_first_200_with_the_key(starting_server: str) -> None:
    answered = threading.Event()
    calls: list[int] = []

    def on_answer() -> None:
        calls.append(len(_Starting.seen))
        answered.set()

    poller = wait_for_first_answer(starting_server, "k-1", on_answer, timeout_s=30)
    assert answered.wait(30), "no answer recorded"
    poller.join(5)
    assert calls == [3]  # after two 503s, once
    assert _Starting.seen == [("/v1/customers/C00000001/offers", "k-1")] * 3
