"""Data-quality profile reads: per-column aggregates, attributes, quarantine reasons, orphans.

Every number is a SQL aggregate over the table, except custom attributes, which are read
from the one JSON column a chunk of customers at a time (SQLite and PostgreSQL disagree on
JSON typing in SQL, and a profile must not fail on an odd stored value).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ColumnElement,
    Date,
    DateTime,
    Float,
    Integer,
    Numeric,
    String,
    Table,
    Text,
    case,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.types import TypeDecorator

from nextoffer.domain.attributes import AttributeKind, AttributeSpec
from nextoffer.store.reads._sql import Bind, connect
from nextoffer.store.reads.attributes import attribute_schema
from nextoffer.store.schema import (
    DATA_TABLES,
    Base,
    Customer,
    IngestLedgerEntry,
    QuarantinedRow,
)

TOP = 5
TOP_MAX_DISTINCT = 1000
"""Top values are listed for columns with at most this many distinct values (categories)."""
ATTRIBUTE_CHUNK = 20_000
REFERENCE_CODES = ("unknown_customer", "unknown_product")


@dataclass(frozen=True)
class ColumnProfile:
    """One column (or custom attribute): emptiness, distinct values, range, top values."""

    name: str
    kind: str
    """number, date, time, boolean, text, id (a key) or an attribute's kind."""
    empty: int
    distinct: int | None
    """None for a key column: every value is distinct by definition (not counted)."""
    minimum: str | None = None
    maximum: str | None = None
    top: list[tuple[str, int]] = field(default_factory=list)
    role: str | None = None
    """Custom attributes only: feature, display, label."""


@dataclass(frozen=True)
class TableProfile:
    """One table: its row count and columns."""

    name: str
    rows: int
    columns: list[ColumnProfile]


@dataclass(frozen=True)
class QuarantineCount:
    """Quarantined rows of an entity with one reason code (`bad_enum`, `unknown_product`...)."""

    entity: str
    code: str
    rows: int
    example: str


@dataclass(frozen=True)
class ReferenceShare:
    """Of an entity's rows read by ingest, how many named an unknown customer or product.

    Rows with an unknown reference are never stored (they are quarantined), so the share is
    counted from the quarantine's first reasons over the rows the ledger says were read.
    """

    entity: str
    rows_read: int
    unknown_customer: int
    unknown_product: int

    @property
    def known_share(self) -> float | None:
        """Share of rows read whose customer and product were known; None before any load."""
        if not self.rows_read:
            return None
        return 1 - (self.unknown_customer + self.unknown_product) / self.rows_read


def _kind(column: Column[Any]) -> str:
    column_type = column.type
    if isinstance(column_type, TypeDecorator):
        column_type = column_type.impl_instance
    if column.primary_key and len(column.table.primary_key.columns) == 1:
        return "id"
    if isinstance(column_type, Boolean):
        return "boolean"
    if isinstance(column_type, DateTime):
        return "time"
    if isinstance(column_type, Date):
        return "date"
    if isinstance(column_type, Integer | Float | Numeric):
        return "number"
    if isinstance(column_type, JSON):
        return "json"
    if isinstance(column_type, String | Text):
        return "text"
    return "other"


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal | float):
        number = float(value)
        return f"{number:.6g}" if math.isfinite(number) else str(number)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def table_profile(bind: Bind, name: str) -> TableProfile:
    """Row count and per-column aggregates of a data table (one scan per column group)."""
    table: Table = Base.metadata.tables[name]
    columns = [c for c in table.columns if _kind(c) != "json"]
    with connect(bind) as conn:
        rows = int(conn.execute(select(func.count()).select_from(table)).scalar_one())
        profiles = []
        for column in columns:
            kind = _kind(column)
            empty: ColumnElement[bool] = column.is_(None)
            if kind in ("text", "id"):
                empty = or_(column.is_(None), column == "")
            parts: list[ColumnElement[Any]] = [func.sum(case((empty, 1), else_=0))]
            if kind != "id":
                parts.append(func.count(column.distinct()))
            if kind in ("number", "date", "time"):
                parts += [func.min(column), func.max(column)]
            values = conn.execute(select(*parts).select_from(table)).one()
            distinct = None if kind == "id" else int(values[1] or 0)
            top: list[tuple[str, int]] = []
            if kind in ("text", "boolean") and distinct and distinct <= TOP_MAX_DISTINCT:
                counted = func.count().label("n")
                filled = [column.is_not(None)] + ([column != ""] if kind == "text" else [])
                top_rows = conn.execute(
                    select(column, counted)
                    .where(*filled)
                    .group_by(column)
                    .order_by(counted.desc(), column)
                    .limit(TOP)
                )
                top = [(_text(v) or "", int(n)) for v, n in top_rows]
            profiles.append(
                ColumnProfile(
                    name=column.name,
                    kind=kind,
                    empty=int(values[0] or 0),
                    distinct=distinct,
                    minimum=_text(values[2]) if len(values) > 2 else None,
                    maximum=_text(values[3]) if len(values) > 2 else None,
                    top=top,
                )
            )
    return TableProfile(name, rows, profiles)


def data_tables_profile(bind: Bind) -> list[TableProfile]:
    """Every data table's profile, in load order."""
    return [table_profile(bind, name) for name in DATA_TABLES]


def attributes_profile(bind: Bind, customers: int) -> list[ColumnProfile]:
    """One profile per registered (not ignored) attribute, over every customer."""
    schema = [s for s in attribute_schema(bind) if s.role.value != "ignore"]
    if not schema:
        return []
    present: Counter[str] = Counter()
    values: dict[str, Counter[Any]] = {s.name: Counter() for s in schema}
    after = ""
    while True:
        query = (
            select(Customer.customer_id, Customer.attributes)
            .where(Customer.customer_id > after)
            .order_by(Customer.customer_id)
            .limit(ATTRIBUTE_CHUNK)
        )
        with connect(bind) as conn:
            rows = conn.execute(query).all()
        for _, stored in rows:
            if not isinstance(stored, dict):
                continue
            for spec in schema:
                value = stored.get(spec.name)
                if value is not None:
                    present[spec.name] += 1
                    values[spec.name][value] += 1
        if len(rows) < ATTRIBUTE_CHUNK:
            break
        after = str(rows[-1][0])
    return [_attribute_profile(s, customers - present[s.name], values[s.name]) for s in schema]


def _attribute_profile(spec: AttributeSpec, empty: int, counts: Counter[Any]) -> ColumnProfile:
    minimum = maximum = None
    top: list[tuple[str, int]] = []
    if spec.kind in (AttributeKind.NUMBER, AttributeKind.DATE):
        # Only values of the attribute's kind are ranged (a kind changed later may leave others).
        wanted = (int, float) if spec.kind is AttributeKind.NUMBER else (str,)
        ranged = [v for v in counts if isinstance(v, wanted) and not isinstance(v, bool)]
        if ranged:
            minimum, maximum = _text(min(ranged)), _text(max(ranged))
    else:
        ordered = sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))
        top = [(_text(v) or "", n) for v, n in ordered[:TOP]]
    return ColumnProfile(
        name=spec.name,
        kind=spec.kind.value,
        empty=empty,
        distinct=len(counts),
        minimum=minimum,
        maximum=maximum,
        top=top,
        role=spec.role.value,
    )


def _reason_code(dialect: str) -> Any:
    reason = QuarantinedRow.reason
    if dialect == "postgresql":
        return func.split_part(reason, literal(":"), 1)
    return func.substr(reason, 1, func.instr(reason, ":") - 1)


def quarantine_counts(bind: Bind) -> list[QuarantineCount]:
    """Quarantined rows per entity and reason code, most first, with one example reason."""
    with connect(bind) as conn:
        code = _reason_code(conn.dialect.name).label("code")
        counted = func.count().label("n")
        rows = conn.execute(
            select(QuarantinedRow.entity, code, counted, func.min(QuarantinedRow.reason))
            .group_by(QuarantinedRow.entity, code)
            .order_by(QuarantinedRow.entity, counted.desc(), code)
        ).all()
    return [QuarantineCount(str(e), str(c), int(n), str(x)) for e, c, n, x in rows]


def reference_shares(bind: Bind, entities: tuple[str, ...]) -> list[ReferenceShare]:
    """For each entity: rows read (ledger) and those quarantined for an unknown reference."""
    with connect(bind) as conn:
        read = dict(
            conn.execute(
                select(IngestLedgerEntry.entity, func.sum(IngestLedgerEntry.rows_read))
                .where(IngestLedgerEntry.entity.in_(entities))
                .group_by(IngestLedgerEntry.entity)
            ).all()
        )
        code = _reason_code(conn.dialect.name)
        unknown = {
            (str(e), str(c)): int(n)
            for e, c, n in conn.execute(
                select(QuarantinedRow.entity, code, func.count())
                .where(
                    QuarantinedRow.entity.in_(entities),
                    or_(*(QuarantinedRow.reason.like(f"{c}:%") for c in REFERENCE_CODES)),
                )
                .group_by(QuarantinedRow.entity, code)
            )
        }
    return [
        ReferenceShare(
            entity,
            int(read.get(entity) or 0),
            unknown.get((entity, "unknown_customer"), 0),
            unknown.get((entity, "unknown_product"), 0),
        )
        for entity in entities
    ]
