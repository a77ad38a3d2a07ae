"""Column types, keys and index helpers that the migration scripts share.

Migrations already applied call these, so what a helper builds must never change: a new
need gets a new helper (or is written out in its migration), never an edit to an old one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from alembic import op

# Shared between columns: none of these types binds itself to a table.
STR8 = sa.String(length=8)
STR16 = sa.String(length=16)
STR32 = sa.String(length=32)
STR36 = sa.String(length=36)
STR64 = sa.String(length=64)
STR100 = sa.String(length=100)
STR128 = sa.String(length=128)
STR200 = sa.String(length=200)
TEXT = sa.Text()
INT = sa.Integer()
BIGINT = sa.BigInteger()
FLOAT = sa.Float()
BOOL = sa.Boolean()
DATE = sa.Date()
JSON = sa.JSON()
MONEY = sa.Numeric(precision=12, scale=2)
UTC_TIME = sa.DateTime(timezone=True)


def required(name: str, type_: sa.types.TypeEngine[Any]) -> sa.Column[Any]:
    """A NOT NULL column."""
    return sa.Column(name, type_, nullable=False)


def optional(name: str, type_: sa.types.TypeEngine[Any]) -> sa.Column[Any]:
    """A nullable column."""
    return sa.Column(name, type_, nullable=True)


def serial_id() -> sa.Column[Any]:
    """`id`, a surrogate key counting up: BIGINT, but INTEGER on SQLite (the rowid)."""
    big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    return sa.Column("id", big, autoincrement=True, nullable=False)


@dataclass(frozen=True)
class _Key:
    columns: tuple[str, ...]


@dataclass(frozen=True)
class _Reference:
    column: str
    target: str
    target_column: str


@dataclass(frozen=True)
class _Unique:
    name: str
    columns: tuple[str, ...]


def primary_key(*columns: str) -> _Key:
    """The table's primary key, named `pk_<table>` by `create_table`."""
    return _Key(columns)


def foreign_key(column: str, target: str, target_column: str | None = None) -> _Reference:
    """`column` references `target.target_column` (by default the column's own name)."""
    return _Reference(column, target, target_column or column)


def unique(name: str, *columns: str) -> _Unique:
    """A unique constraint with a name of its own."""
    return _Unique(name, columns)


def create_table(table: str, *items: sa.Column[Any] | _Key | _Reference | _Unique) -> None:
    """`op.create_table`, naming the keys after the table: pk_<table>, fk_<table>_<col>_<target>."""
    parts: list[sa.Column[Any] | sa.Constraint] = []
    for item in items:
        if isinstance(item, _Key):
            parts.append(sa.PrimaryKeyConstraint(*item.columns, name=op.f(f"pk_{table}")))
        elif isinstance(item, _Reference):
            name = op.f(f"fk_{table}_{item.column}_{item.target}")
            target = f"{item.target}.{item.target_column}"
            parts.append(sa.ForeignKeyConstraint([item.column], [target], name=name))
        elif isinstance(item, _Unique):
            parts.append(sa.UniqueConstraint(*item.columns, name=item.name))
        else:
            parts.append(item)
    op.create_table(table, *parts)


def create_indexes(table: str, *indexes: tuple[str, list[str]]) -> None:
    """Non-unique indexes on `table`, each given as (name, columns)."""
    with op.batch_alter_table(table, schema=None) as batch_op:
        for name, columns in indexes:
            batch_op.create_index(name, columns, unique=False)


def drop_tables(*tables: str) -> None:
    """Drop `tables` in the order given (dependents first); their indexes go with them."""
    for table in tables:
        op.drop_table(table)
