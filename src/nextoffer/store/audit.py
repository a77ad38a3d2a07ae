"""The audit table: appending entries (idempotently, by id) and reading them back, newest first.

Nothing here updates or deletes: the table is append-only, and on PostgreSQL and SQLite a
trigger (migration 0010) refuses UPDATE and DELETE whoever asks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from nextoffer.store.reads._sql import Bind, connect
from nextoffer.store.schema import AuditRecord

BATCH = 1000
"""Rows per insert statement."""

_AUDIT: Table = AuditRecord.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class AuditRow:
    """One stored audit entry, as `nextoffer audit` and the console list it."""

    id: str
    at: datetime
    actor_kind: str
    actor_id: str
    action: str
    target: str | None
    customer_digest: str | None
    address: str | None
    request_id: str | None
    detail: dict[str, Any]

    @property
    def actor(self) -> str:
        """`kind:id`."""
        return f"{self.actor_kind}:{self.actor_id}"


def _chunks(items: Sequence[Any], size: int = BATCH) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def insert_entries(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Append `audit` rows; an id already stored (a replayed spool) is skipped."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    for chunk in _chunks(rows):
        conn.execute(insert(_AUDIT).on_conflict_do_nothing(index_elements=["id"]), list(chunk))


def find_entries(
    bind: Bind,
    *,
    customer_digest: str | None = None,
    actor_kind: str | None = None,
    actor_id: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    limit: int = 200,
) -> list[AuditRow]:
    """Entries matching every filter given, newest first, at most `limit`."""
    query = select(_AUDIT)
    if customer_digest is not None:
        query = query.where(_AUDIT.c.customer_digest == customer_digest)
    if actor_kind is not None:
        query = query.where(_AUDIT.c.actor_kind == actor_kind)
    if actor_id is not None:
        query = query.where(_AUDIT.c.actor_id == actor_id)
    if action is not None:
        query = query.where(_AUDIT.c.action == action)
    if since is not None:
        query = query.where(_AUDIT.c.at >= since)
    query = query.order_by(_AUDIT.c.at.desc(), _AUDIT.c.id.desc()).limit(limit)
    with connect(bind) as conn:
        return [AuditRow(**row._asdict()) for row in conn.execute(query)]
