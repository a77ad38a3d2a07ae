"""SQL helpers the read repositories share: connections, UTC days, dates, rates."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Date, Engine, cast, func

Bind = Engine | Connection
"""What a read takes: an engine (one connection per call) or a caller's open connection."""


@contextmanager
def connect(bind: Bind) -> Iterator[Connection]:
    """A connection: the caller's own, or a fresh one from the engine, closed afterwards."""
    if isinstance(bind, Connection):
        yield bind
        return
    with bind.connect() as conn:
        yield conn


def rate(numerator: int, denominator: int) -> float | None:
    """The ratio numerator / denominator, None when there is nothing to divide by."""
    return numerator / denominator if denominator else None


def utc_day(column: Any, dialect: str) -> ColumnElement[Any]:
    """The UTC calendar day of a timestamp column, in SQL."""
    if dialect == "postgresql":
        return cast(func.timezone("UTC", column), Date)
    # SQLite keeps UTC times as 'YYYY-MM-DD HH:MM:SS' text; date() takes the day part.
    return func.date(column)


def as_date(value: Any) -> date:
    """A date from what a driver returns for a day (date, datetime or SQLite's text)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])
