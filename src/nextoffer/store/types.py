"""Column types shared by the tables: `UtcDateTime`, aware UTC on every database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """A `TIMESTAMP WITH TIME ZONE` that always reads back as an aware UTC datetime.

    SQLite has no time zones: SQLAlchemy stores the wall time and hands back a naive value.
    PostgreSQL hands back the session's zone. Both are made aware UTC here, once, so no
    caller fixes them up. On write, an aware value is converted to UTC (SQLite would
    otherwise keep a foreign wall time and drop its offset) and a naive one is taken as UTC,
    the zone every writer in nextoffer means — the DDL is the plain `DateTime(timezone=True)`.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        # Anything but a datetime (None, a string PostgreSQL parses) goes on as before.
        return as_utc(value) if isinstance(value, datetime) else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return as_utc(value) if isinstance(value, datetime) else value


def as_utc(value: datetime) -> datetime:
    """`value` as an aware UTC datetime; a naive value is taken to be UTC already."""
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
