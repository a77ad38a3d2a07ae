"""Idempotent bulk upserts: COPY + one merge on PostgreSQL, batched statements on SQLite."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from sqlalchemy import Boolean, Connection, Date, DateTime, Index, Table, text
from sqlalchemy.types import TypeDecorator, TypeEngine

OnConflict = Literal["update", "nothing", "fail"]

SQLITE_BATCH_ROWS = 50_000


def _column_type(table: Table, name: str) -> TypeEngine[object]:
    """The column's storage type: the `impl` of a decorated type such as `UtcDateTime`."""
    column_type: TypeEngine[object] = table.columns[name].type
    if isinstance(column_type, TypeDecorator):
        return column_type.impl_instance
    return column_type


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def upsert_frame(
    conn: Connection,
    table: Table,
    frame: pd.DataFrame,
    key: Sequence[str],
    *,
    on_conflict: OnConflict = "update",
) -> int:
    """Insert `frame` into `table`, updating rows whose `key` exists and whose values differ.

    Rows whose stored values already equal the incoming ones are not rewritten, so a re-run
    of the same input writes nothing. Returns the number of rows inserted or changed.
    `on_conflict="nothing"` keeps stored rows; `"fail"` is for callers that know every key
    is new (a first load into an empty table): PostgreSQL then COPYs straight into the
    table, and a conflict raises instead of merging.
    The caller owns the transaction: everything here commits or rolls back with it.
    """
    if frame.empty:
        return 0
    columns = list(frame.columns)
    unknown = set(columns) - set(table.columns.keys())
    if unknown:
        raise ValueError(f"{table.name}: no such columns {sorted(unknown)}")
    postgres = conn.dialect.name == "postgresql"
    distinct_op = "IS DISTINCT FROM" if postgres else "IS NOT"
    clause = _conflict_clause(table, columns, list(key), on_conflict, distinct_op)
    return (_upsert_postgres if postgres else _upsert_sqlite)(conn, table, frame, clause)


def _column_list(frame: pd.DataFrame) -> str:
    return ", ".join(_quote(c) for c in frame.columns)


def _conflict_clause(
    table: Table, columns: list[str], key: list[str], on_conflict: OnConflict, distinct_op: str
) -> str:
    """The INSERT's ON CONFLICT clause; empty for "fail", where a conflict raises."""
    keys = ", ".join(_quote(k) for k in key)
    values = [c for c in columns if c not in key]
    if on_conflict == "fail":
        return ""
    if on_conflict == "nothing" or not values:
        return f"ON CONFLICT ({keys}) DO NOTHING"
    assignments = ", ".join(f"{_quote(c)} = excluded.{_quote(c)}" for c in values)
    stored = ", ".join(f"{_quote(table.name)}.{_quote(c)}" for c in values)
    incoming = ", ".join(f"excluded.{_quote(c)}" for c in values)
    if len(values) == 1:
        changed = f"{stored} {distinct_op} {incoming}"
    else:
        changed = f"({stored}) {distinct_op} ({incoming})"
    return f"ON CONFLICT ({keys}) DO UPDATE SET {assignments} WHERE {changed}"


def _to_arrow_column(column_type: TypeEngine[Any], series: pd.Series) -> pa.Array:
    if isinstance(column_type, DateTime):
        # Naive UTC text formats ~10x faster than tz-aware; the session is set to UTC.
        utc = pd.to_datetime(series, utc=True).dt.tz_localize(None)
        return pa.array(utc).cast(pa.timestamp("us"))
    if isinstance(column_type, Date):
        return pa.array(pd.to_datetime(series).dt.date, type=pa.date32())
    return pa.array(series, from_pandas=True)


def _to_arrow(table: Table, frame: pd.DataFrame) -> pa.Table:
    arrays = [_to_arrow_column(_column_type(table, name), frame[name]) for name in frame.columns]
    return pa.Table.from_arrays(arrays, names=list(frame.columns))


def _upsert_postgres(conn: Connection, table: Table, frame: pd.DataFrame, clause: str) -> int:
    buffer = io.BytesIO()
    pa_csv.write_csv(_to_arrow(table, frame), buffer, pa_csv.WriteOptions(include_header=False))
    stage = f"stage_{table.name}"
    column_list = _column_list(frame)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    # A temporary, unindexed copy of the target's shape: COPY into it is nearly as fast as
    # the database allows, and the one INSERT ... ON CONFLICT below is the merge.
    cursor.execute("SET LOCAL TIME ZONE 'UTC'")
    if not clause:  # on_conflict="fail": every key is new, so COPY straight into the table
        target = f"{_quote(table.name)} ({column_list})"
        with cursor.copy(f"COPY {target} FROM STDIN (FORMAT csv)") as copy:
            copy.write(buffer.getbuffer())
        return len(frame)
    cursor.execute(f"DROP TABLE IF EXISTS {_quote(stage)}")
    cursor.execute(
        f"CREATE TEMPORARY TABLE {_quote(stage)} ON COMMIT DROP AS "
        f"SELECT {column_list} FROM {_quote(table.name)} WITH NO DATA"
    )
    with cursor.copy(f"COPY {_quote(stage)} ({column_list}) FROM STDIN (FORMAT csv)") as copy:
        copy.write(buffer.getbuffer())
    cursor.execute(
        f"INSERT INTO {_quote(table.name)} ({column_list}) "
        f"SELECT {column_list} FROM {_quote(stage)} {clause}"
    )
    changed = int(cursor.rowcount)
    cursor.execute(f"DROP TABLE {_quote(stage)}")
    return max(changed, 0)


def _sqlite_values(table: Table, frame: pd.DataFrame) -> list[tuple[object, ...]]:
    """Rows as plain Python values stored the way SQLAlchemy's SQLite types read them back.

    Columns are converted whole (Arrow formats the times and turns gaps into None), and
    the rows are zipped from the columns: no per-row pandas work.
    """
    columns: list[list[object]] = []
    for name in frame.columns:
        series = frame[name]
        column_type = _column_type(table, name)
        if isinstance(column_type, DateTime | Date):
            # Arrow prints timestamp[us] as 2026-04-17 19:14:02.000000 and date32 as
            # 2026-04-17: the text SQLAlchemy's SQLite types write and read.
            columns.append(pc.cast(_to_arrow_column(column_type, series), pa.string()).to_pylist())
        elif isinstance(column_type, Boolean):
            columns.append(
                series.astype("Int64").astype(object).where(series.notna(), None).tolist()
            )
        elif series.dtype == object:  # as they are: Arrow could retype mixed values
            columns.append(series.where(series.notna(), None).tolist())
        else:
            columns.append(pa.array(series, from_pandas=True).to_pylist())
    return list(zip(*columns, strict=True))


def _upsert_sqlite(conn: Connection, table: Table, frame: pd.DataFrame, clause: str) -> int:
    column_list = _column_list(frame)
    placeholders = ", ".join("?" for _ in frame.columns)
    sql = f"INSERT INTO {_quote(table.name)} ({column_list}) VALUES ({placeholders}) {clause}"
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    changed = 0
    for start in range(0, len(frame), SQLITE_BATCH_ROWS):
        rows = _sqlite_values(table, frame.iloc[start : start + SQLITE_BATCH_ROWS])
        before = conn.connection.driver_connection.total_changes  # type: ignore[union-attr]
        cursor.executemany(sql, rows)
        changed += conn.connection.driver_connection.total_changes - before  # type: ignore[union-attr]
    return changed


def secondary_indexes(table: Table) -> list[Index]:
    """The table's indexes other than its primary key, in a stable order."""
    return sorted(table.indexes, key=lambda index: str(index.name))


def drop_secondary_indexes(conn: Connection, table: Table) -> None:
    """Drop every secondary index before a load that at least doubles the table.

    Each index is then rebuilt once, by sorting, instead of being maintained row by row:
    the PostgreSQL manual's advice for populating a table.
    """
    for index in secondary_indexes(table):
        conn.execute(text(f"DROP INDEX IF EXISTS {_quote(str(index.name))}"))


def ensure_secondary_indexes(conn: Connection, table: Table) -> None:
    """Create any secondary index that is missing (after a big load, or one that died)."""
    if conn.dialect.name == "postgresql":
        # Index builds sort in memory up to this size instead of spilling to disk.
        conn.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
    for index in secondary_indexes(table):
        index.create(conn, checkfirst=True)


def _primary_key_name(table: Table) -> str:
    return str(table.primary_key.name)


def has_primary_key(conn: Connection, table: Table) -> bool:
    """PostgreSQL: whether the table's primary-key constraint exists (a load may defer it)."""
    found = conn.execute(
        text(
            "SELECT EXISTS (SELECT 1 FROM pg_constraint "
            "WHERE conrelid = CAST(:t AS regclass) AND contype = 'p')"
        ),
        {"t": table.name},
    ).scalar()
    return bool(found)


def drop_primary_key(conn: Connection, table: Table) -> None:
    """PostgreSQL: drop the primary key before COPYing a big first load into an empty table.

    Checking each row's key as it arrives costs more than the COPY itself; the key is
    built once after the load instead (`build_primary_key`), by sorting. Its columns stay
    NOT NULL, and the file's own duplicates are quarantined before they are written.
    """
    conn.execute(
        text(
            f"ALTER TABLE {_quote(table.name)} "
            f"DROP CONSTRAINT IF EXISTS {_quote(_primary_key_name(table))}"
        )
    )


def build_primary_key(conn: Connection, *, table: Table) -> None:
    """PostgreSQL: add the primary key back (after a load that deferred it, or one that died)."""
    name = _quote(_primary_key_name(table))
    columns = ", ".join(_quote(c.name) for c in table.primary_key.columns)
    conn.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
    # A unique index left by a build that died before it became the key.
    conn.execute(text(f"DROP INDEX IF EXISTS {name}"))
    conn.execute(text(f"CREATE UNIQUE INDEX {name} ON {_quote(table.name)} ({columns})"))
    conn.execute(
        text(
            f"ALTER TABLE {_quote(table.name)} ADD CONSTRAINT {name} PRIMARY KEY USING INDEX {name}"
        )
    )
