"""Erasing customers from every table that holds their id, their export, the erasure ledger.

The tables are found from the models, not listed by hand: every column named
`customer_id` (plus the few that hold the id under another name), so a table added later
is erased too. Quarantined rows hold the id inside raw text and are matched as a token.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Column, Connection, Engine, Table, delete, insert, or_, select

from nextoffer.domain.privacy import customer_digest, mention_pattern, mentions_digest
from nextoffer.store.schema import Base, ErasureEntry, Event, QuarantinedRow

ID_COLUMN = "customer_id"
OTHER_ID_COLUMNS = frozenset({("exposures", "unit_id")})
"""Columns that hold a customer's id under another name (an experiment's unit)."""
PRESERVED = frozenset({"erasure_ledger", "audit"})
"""Tables that hold digests only, never ids: erasure leaves them whole."""
_BATCH = 500  # ids per IN (...) and quarantine rows per delete


@dataclass
class Erased:
    """What an erasure removed: rows per table, and the sessions the customers used."""

    rows: dict[str, int] = field(default_factory=dict)
    sessions: set[str] = field(default_factory=set)
    customers: int = 0

    def add(self, table: str, count: int) -> None:
        """Count `count` rows removed from `table`."""
        if count:
            self.rows[table] = self.rows.get(table, 0) + count


def customer_columns() -> list[tuple[Table, Column[Any]]]:
    """(table, column) of every column holding customer ids, dependent tables first."""
    found = []
    for table in reversed(Base.metadata.sorted_tables):  # children before `customers`
        if table.name in PRESERVED:
            continue
        for column in table.columns:
            if column.name == ID_COLUMN or (table.name, column.name) in OTHER_ID_COLUMNS:
                found.append((table, column))
    return found


def _chunks(values: Collection[str]) -> Iterator[list[str]]:
    items = sorted(values)
    for start in range(0, len(items), _BATCH):
        yield items[start : start + _BATCH]


def _secure_delete(conn: Connection, on: bool) -> None:
    # SQLite leaves deleted rows readable in free pages; secure_delete overwrites them.
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"PRAGMA secure_delete = {'ON' if on else 'OFF'}")


def erase_customers(
    engine: Engine, customer_ids: Collection[str], key: str, now: datetime
) -> Erased:
    """Delete every row of `customer_ids` and record their digests, in one transaction."""
    result = Erased()
    if not customer_ids:
        return result
    with engine.begin() as conn:
        _secure_delete(conn, True)
        try:
            _erase_ids(conn, set(customer_ids), result)
            pattern = mention_pattern(customer_ids)
            _erase_quarantine(conn, customer_ids, lambda text: bool(pattern.search(text)), result)
            _record(conn, {customer_digest(key, i) for i in customer_ids}, now)
        finally:
            _secure_delete(conn, False)
    _checkpoint(engine)
    return result


def _erase_ids(conn: Connection, ids: set[str], result: Erased) -> None:
    if not ids:
        return
    for chunk in _chunks(ids):
        query = select(Event.session_id).where(
            Event.customer_id.in_(chunk), Event.session_id.is_not(None)
        )
        result.sessions |= {str(s) for (s,) in conn.execute(query.distinct())}
    for table, column in customer_columns():
        for chunk in _chunks(ids):
            count = conn.execute(delete(table).where(column.in_(chunk))).rowcount
            result.add(table.name, count)
            if table.name == "customers":
                result.customers += count


def _erase_quarantine(
    conn: Connection,
    ids: Iterable[str] | None,
    names_erased: Callable[[str], bool],
    result: Erased,
) -> None:
    """Delete quarantined rows whose raw text or reason names an erased customer.

    With `ids`, only rows containing one of them as a substring are read (a LIKE); without
    (ids known by digest only), every row is read and tokenised.
    """
    table = QuarantinedRow.__table__
    assert isinstance(table, Table)
    query = select(table.c.id, table.c.raw, table.c.reason)
    if ids is not None:
        ids = list(ids)
        if not ids:
            return
        query = query.where(
            or_(
                *(table.c.raw.contains(i, autoescape=True) for i in ids),
                *(table.c.reason.contains(i, autoescape=True) for i in ids),
            )
        )
    doomed = [row.id for row in conn.execute(query) if names_erased(f"{row.raw}\n{row.reason}")]
    for start in range(0, len(doomed), _BATCH):
        part = doomed[start : start + _BATCH]
        result.add("quarantine", conn.execute(delete(table).where(table.c.id.in_(part))).rowcount)


def _record(conn: Connection, digests: set[str], now: datetime) -> None:
    have = {d for (d,) in conn.execute(select(ErasureEntry.digest))}
    new = sorted(digests - have)
    if new:
        conn.execute(insert(ErasureEntry), [{"digest": d, "erased_at": now} for d in new])


def _checkpoint(engine: Engine) -> None:
    # The WAL still holds the pages as they were before; fold it in and empty it.
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def ledger_digests(engine: Engine) -> set[str]:
    """The digests the erasure ledger table holds."""
    with engine.connect() as conn:
        return {str(d) for (d,) in conn.execute(select(ErasureEntry.digest))}


def reapply(engine: Engine, digests: set[str], key: str, now: datetime) -> Erased:
    """Erase again every customer whose digest is in `digests`, and put them in the ledger.

    For a restored database: its ledger table is as old as the backup, so `digests` (the
    copy kept outside the database) may name customers the backup still holds. Every
    distinct id of every id column is hashed; there is no other way back from a digest.
    """
    result = Erased()
    if not digests:
        return result
    with engine.begin() as conn:
        ids: set[str] = set()
        for _table, column in customer_columns():
            query = select(column).distinct().where(column.is_not(None))
            ids |= {
                str(v) for (v,) in conn.execute(query) if customer_digest(key, str(v)) in digests
            }
        _secure_delete(conn, True)
        try:
            _erase_ids(conn, ids, result)
            _erase_quarantine(conn, None, lambda text: mentions_digest(text, key, digests), result)
            _record(conn, digests, now)
        finally:
            _secure_delete(conn, False)
    _checkpoint(engine)
    return result


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, str) and value[:1] in "[{":
        try:  # JSON stored as text on SQLite
            return json.loads(value)
        except ValueError:
            return value
    return value


def customer_rows(engine: Engine, customer_id: str) -> dict[str, list[dict[str, Any]]]:
    """Every stored row about the customer, by table (right of access), JSON-ready."""
    rows: dict[str, list[dict[str, Any]]] = {}
    with engine.connect() as conn:
        ordered = sorted(customer_columns(), key=lambda tc: (tc[0].name != "customers", tc[0].name))
        for table, column in ordered:  # `customers` first, then by name
            found = conn.execute(select(table).where(column == customer_id)).mappings()
            items = [{k: _plain(v) for k, v in row.items()} for row in found]
            if items:  # a table with two id columns (exposures) lists a row once
                existing = rows.setdefault(table.name, [])
                existing.extend(i for i in items if i not in existing)
        pattern = mention_pattern([customer_id])
        rejected = QuarantinedRow.__table__
        query = select(rejected).where(rejected.c.raw.contains(customer_id, autoescape=True))
        quarantined = [
            {k: _plain(v) for k, v in row.items()}
            for row in conn.execute(query).mappings()
            if pattern.search(str(row["raw"]))
        ]
        if quarantined:
            rows["quarantine"] = quarantined
    return rows


def known_ids(engine: Engine, customer_ids: Collection[str]) -> set[str]:
    """Those of `customer_ids` that some table holds."""
    found: set[str] = set()
    with engine.connect() as conn:
        for _table, column in customer_columns():
            todo = set(customer_ids) - found
            for chunk in _chunks(todo):
                query = select(column).distinct().where(column.in_(chunk))
                found |= {str(v) for (v,) in conn.execute(query)}
            if found >= set(customer_ids):
                break
    return found
