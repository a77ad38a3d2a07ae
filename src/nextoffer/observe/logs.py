"""Logging to stderr: JSON lines for machines, plain lines on a terminal, with a run id."""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal, TextIO

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

#: NEXTOFFER_LOG_JSON: true, false, or "auto" (JSON unless stderr is a terminal).
JsonLines = bool | Literal["auto"]


def _extras(record: logging.LogRecord) -> dict[str, object]:
    """The fields a caller added with `extra=`, plus the correlation id when one is set."""
    fields: dict[str, object] = {}
    if (cid := correlation_id.get()) is not None:
        fields["id"] = cid
    fields.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, id, and any `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update(_extras(record))
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class TextFormatter(logging.Formatter):
    """One line for a person: time (UTC), level, logger, message, then `key=value` extras."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S")
        line = f"{when} {record.levelname:<7} {record.name}: {record.getMessage()}"
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        if extras:
            line = f"{line}  {extras}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is when a record is emitted, not when it was set up.

    A live rich display (the CLI's progress bars and spinners) swaps sys.stderr for a proxy
    that prints above the display; a handler holding the original stream would draw through it.
    """

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass  # always the current sys.stderr


def wants_json(json_lines: JsonLines, stream: TextIO | None = None) -> bool:
    """Whether to write JSON lines: as forced, or, for "auto", unless STREAM is a terminal."""
    if json_lines != "auto":
        return bool(json_lines)
    stream = sys.stderr if stream is None else stream
    try:
        return not stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return True


def configure_logging(level: str = "INFO", *, json_lines: JsonLines = "auto") -> None:
    """Send logs to stderr: JSON lines, or plain lines when asked or when stderr is a terminal."""
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter() if wants_json(json_lines) else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Alembic announces every migration step at INFO, botocore where it found credentials;
    # only our own INFO lines matter.
    for chatty in ("alembic", "botocore", "boto3", "s3transfer"):
        logging.getLogger(chatty).setLevel(max(root.level, logging.WARNING))
