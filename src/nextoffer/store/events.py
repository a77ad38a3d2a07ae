"""Writing offer events: reference checks, idempotent inserts, contact rows, quarantine.

Every insert here is ON CONFLICT DO NOTHING on the natural key, so writing the same
events again (a replayed spool) stores nothing twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, String, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from nextoffer.store.schema import ContactHistory, Customer, Event, Product, QuarantinedRow

LOOKUP_CHUNK = 500
"""Ids per `IN (...)` list: far below SQLite's and PostgreSQL's bound-parameter limits."""

_EVENTS: Table = Event.__table__  # type: ignore[assignment]
_CONTACTS: Table = ContactHistory.__table__  # type: ignore[assignment]
_QUARANTINE: Table = QuarantinedRow.__table__  # type: ignore[assignment]


def text_limits(fields: Iterable[str]) -> dict[str, int]:
    """The width of each of the `events` text columns in `fields` that has one."""
    limits: dict[str, int] = {}
    for name in fields:
        column_type = _EVENTS.c[name].type
        if isinstance(column_type, String) and column_type.length:
            limits[name] = column_type.length
    return limits


def _insert(conn: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """`INSERT` in the connection's dialect, which has ON CONFLICT DO NOTHING."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _existing(conn: Connection, column: Any, ids: Iterable[str]) -> set[str]:
    wanted = sorted(set(ids))
    found: set[str] = set()
    for chunk in _chunks(wanted, LOOKUP_CHUNK):
        found.update(conn.execute(select(column).where(column.in_(chunk))).scalars())
    return found


def existing_customers(conn: Connection, ids: Iterable[str]) -> set[str]:
    """Those of `ids` that are customers."""
    return _existing(conn, Customer.customer_id, ids)


def existing_products(conn: Connection, ids: Iterable[str]) -> set[str]:
    """Those of `ids` that are catalogue products."""
    return _existing(conn, Product.product_id, ids)


def insert_events(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> set[str]:
    """Insert `events` rows, skipping event ids already stored; returns the ids stored now."""
    if not rows:
        return set()
    statement = (
        _insert(conn, _EVENTS)
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(_EVENTS.c.event_id)
    )
    return {str(i) for i in conn.execute(statement, list(rows)).scalars()}


def insert_contacts(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert `contact_history` rows, skipping contact ids already stored."""
    if rows:
        statement = _insert(conn, _CONTACTS).on_conflict_do_nothing(index_elements=["contact_id"])
        conn.execute(statement, list(rows))


def insert_quarantined(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert `quarantine` rows, skipping (file hash, entity, line) already stored."""
    if rows:
        statement = _insert(conn, _QUARANTINE).on_conflict_do_nothing(
            index_elements=["source_sha256", "entity", "line"]
        )
        conn.execute(statement, list(rows))
