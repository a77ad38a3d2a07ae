"""Logs: JSON lines for machines, plain lines on a terminal, NEXTOFFER_LOG_JSON forces either."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator

import pytest

from nextoffer.config import Settings
from nextoffer.observe.logs import configure_logging, correlation_id, wants_json


class Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test configures the root logger; put the test runner's back afterwards."""
    for name in list(os.environ):
        if name.startswith("NEXTOFFER_"):
            monkeypatch.delenv(name)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def emit(monkeypatch: pytest.MonkeyPatch, stderr: io.StringIO, json_lines: bool | str) -> str:
    monkeypatch.setattr("sys.stderr", stderr)
    configure_logging("INFO", json_lines=json_lines)  # type: ignore[arg-type]
    logging.getLogger("nextoffer.test").info("loaded %d rows", 3, extra={"rows": 3})
    return stderr.getvalue()


def test_the_setting_is_auto_unless_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().log_json == "auto"
    for text, forced in (("true", True), ("false", False), ("1", True), ("0", False)):
        monkeypatch.setenv("NEXTOFFER_LOG_JSON", text)
        assert Settings().log_json is forced
    monkeypatch.setenv("NEXTOFFER_LOG_JSON", "auto")
    assert Settings().log_json == "auto"


def test_auto_is_json_unless_stderr_is_a_terminal() -> None:
    assert wants_json("auto", io.StringIO()) is True
    assert wants_json("auto", Terminal()) is False
    assert wants_json(True, Terminal()) is True
    assert wants_json(False, io.StringIO()) is False


def test_a_terminal_gets_plain_lines_with_the_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    token = correlation_id.set("run-1")
    try:
        line = emit(monkeypatch, Terminal(), "auto").strip()
    finally:
        correlation_id.reset(token)
    assert not line.startswith("{")
    assert "INFO" in line and "nextoffer.test: loaded 3 rows" in line
    assert "id=run-1" in line and "rows=3" in line


def test_a_pipe_gets_json_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    record = json.loads(emit(monkeypatch, io.StringIO(), "auto"))
    assert record["level"] == "info"
    assert record["logger"] == "nextoffer.test"
    assert record["message"] == "loaded 3 rows"
    assert record["rows"] == 3


def test_the_setting_forces_either_way(monkeypatch: pytest.MonkeyPatch) -> None:
    assert json.loads(emit(monkeypatch, Terminal(), True))["message"] == "loaded 3 rows"
    assert not emit(monkeypatch, io.StringIO(), False).startswith("{")


def test_records_go_to_the_stderr_of_the_moment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rich live display swaps sys.stderr for a proxy; log lines must go through it."""
    monkeypatch.setattr("sys.stderr", io.StringIO())
    configure_logging("INFO", json_lines=True)
    later = io.StringIO()
    monkeypatch.setattr("sys.stderr", later)
    logging.getLogger("nextoffer.test").warning("after the swap")
    assert json.loads(later.getvalue())["message"] == "after the swap"
