"""Quarantine reads: rejected rows per entity, keyset pages, and the chunked full listing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from nextoffer.domain.results import from_attributes
from nextoffer.store.reads._sql import Bind, connect
from nextoffer.store.schema import QuarantinedRow


@dataclass(frozen=True)
class QuarantineView:
    """A rejected input row with its reason."""

    id: int
    entity: str
    source: str
    line: int
    reason: str
    raw: str
    run_id: str
    quarantined_at: datetime


QUARANTINE_COLUMNS = tuple(f.name for f in fields(QuarantineView))


def _quarantined(row: Any) -> QuarantineView:
    return from_attributes(QuarantineView, row, id=int, line=int)


def quarantine_counts(bind: Bind) -> dict[str, int]:
    """Quarantined rows per entity (an index-only count on `ix_quarantine_entity_at`)."""
    with connect(bind) as conn:
        rows = conn.execute(
            select(QuarantinedRow.entity, func.count())
            .group_by(QuarantinedRow.entity)
            .order_by(QuarantinedRow.entity)
        )
        return {str(entity): int(n) for entity, n in rows}


def quarantine_page(
    bind: Bind, *, entity: str | None = None, before_id: int | None = None, limit: int = 50
) -> list[QuarantineView]:
    """Quarantined rows newest first by id, after the id `before_id`."""
    query = select(QuarantinedRow).order_by(QuarantinedRow.id.desc()).limit(limit)
    if entity:
        query = query.where(QuarantinedRow.entity == entity)
    if before_id is not None:
        query = query.where(QuarantinedRow.id < before_id)
    with connect(bind) as conn:
        return [_quarantined(row) for row in conn.execute(query)]


def quarantine_rows(
    bind: Bind, *, entity: str | None = None, chunk: int = 2000
) -> Iterator[QuarantineView]:
    """Every quarantined row by id, read `chunk` rows per query (for the CSV download).

    A connection is held per chunk, not for the whole download: a slow client never keeps
    one from the pool.
    """
    after = 0
    while True:
        query = (
            select(QuarantinedRow)
            .where(QuarantinedRow.id > after)
            .order_by(QuarantinedRow.id)
            .limit(chunk)
        )
        if entity:
            query = query.where(QuarantinedRow.entity == entity)
        with connect(bind) as conn:
            rows = [_quarantined(row) for row in conn.execute(query)]
        yield from rows
        if len(rows) < chunk:
            return
        after = rows[-1].id
