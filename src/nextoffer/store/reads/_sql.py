"""SQL helpers the read repositories share: connections, rows, UTC days, dates, rates."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Date,
    Engine,
    Executable,
    Select,
    cast,
    func,
    select,
)

from nextoffer.domain.results import from_attributes

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    View = TypeVar("View", bound=DataclassInstance)

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


def first_row(
    bind: Bind, query: Executable, view: type[View], **convert: Callable[[Any], Any]
) -> View | None:
    """The query's first row as a `view` (see `from_attributes`), or None when it finds none."""
    with connect(bind) as conn:
        row = conn.execute(query).first()
    return None if row is None else from_attributes(view, row, **convert)


def view_columns(entity: Any, view: type[DataclassInstance]) -> list[Any]:
    """The columns of `entity` that a `view` dataclass's fields are named after, in order."""
    return [getattr(entity, f.name) for f in fields(view)]


def newest_first(entity: Any, customer_id: str, at: Any, limit: int) -> Select[Any]:
    """The `limit` newest rows of `entity` for one customer by the time column `at`."""
    return select(entity).where(entity.customer_id == customer_id).order_by(at.desc()).limit(limit)


def rate(numerator: int, denominator: int) -> float | None:
    """The ratio numerator / denominator, None when there is nothing to divide by."""
    return numerator / denominator if denominator else None


def utc_day(column: Any, dialect: str) -> ColumnElement[Any]:
    """The UTC calendar day of a timestamp column, in SQL."""
    if dialect == "postgresql":
        return cast(func.timezone("UTC", column), Date)
    # SQLite keeps UTC times as 'YYYY-MM-DD HH:MM:SS' text; date() takes the day part.
    return func.date(column)


def optional_float(value: Any) -> float | None:
    """A float from a nullable numeric column (a Decimal on PostgreSQL), None for NULL."""
    return None if value is None else float(value)


def as_date(value: Any) -> date:
    """A date from what a driver returns for a day (date, datetime or SQLite's text)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])
