"""Table-level steps of a bulk file load, by table name: what ingest asks of the database."""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING

import pyarrow as pa
from sqlalchemy import Connection, Engine, Index, Table, text, update

from nextoffer.store.bulk import (
    OnConflict,
    build_primary_key,
    drop_primary_key,
    drop_secondary_indexes,
    ensure_secondary_indexes,
    has_primary_key,
    secondary_indexes,
    upsert_frame,
)
from nextoffer.store.engine import is_postgres
from nextoffer.store.schema import Base, QuarantinedRow

if TYPE_CHECKING:
    import pandas as pd

QUARANTINE_KEY = ("source_sha256", "entity", "line")
DEFERRED_KEY_TABLES = frozenset({"transactions", "subscriptions"})
"""Tables only ingest writes (no ON CONFLICT elsewhere, no foreign key points at them): a
first load into one when empty builds its primary key after the rows, not row by row."""


def _table(name: str) -> Table:
    return Base.metadata.tables[name]


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def stored_key_array(engine: Engine, table_name: str) -> pa.Array:
    """Every primary-key value of a table with a one-column key (products, customers).

    As Arrow text, fetched by the driver in one go: no ORM row object per id.
    """
    key = _quote_ident(str(next(iter(_table(table_name).primary_key.columns)).name))
    with engine.connect() as conn:
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(f"SELECT {key} FROM {_quote_ident(table_name)}")
        rows = cursor.fetchall()
    return pa.array([row[0] for row in rows], type=pa.string())


def size_hint(engine: Engine, table_name: str) -> tuple[float, bool]:
    """(An estimate of the table's rows, whether it is empty).

    PostgreSQL: the planner's estimate. SQLite keeps none, so only an empty table (0) is
    told apart from one with rows (infinity): a first load there inserts without its
    secondary indexes and builds them after, and other loads keep them.
    """
    empty_sql = f"SELECT NOT EXISTS (SELECT 1 FROM {_quote_ident(table_name)})"
    if not is_postgres(engine):
        with engine.connect() as conn:
            empty = bool(conn.execute(text(empty_sql)).scalar())
        return (0.0 if empty else math.inf), empty
    with engine.connect() as conn:
        estimate = conn.execute(
            text("SELECT reltuples FROM pg_class WHERE oid = CAST(:t AS regclass)"),
            {"t": table_name},
        ).scalar()
        empty = bool(conn.execute(text(empty_sql)).scalar())
    return max(float(estimate or 0), 0.0), empty


def prepare_indexes(
    engine: Engine, table_name: str, *, rebuild: bool, defer_key: bool = False
) -> None:
    """Before a load: drop secondary indexes (`rebuild`, a big load) or make sure they exist.

    `defer_key` (a big first load into an empty table, PostgreSQL): the primary key of a
    table in `DEFERRED_KEY_TABLES` is dropped too, and `finish_rebuild` builds it. A key
    left dropped by a load that died is built again here, before anything is merged.
    """
    table = _table(table_name)
    with engine.begin() as conn:
        postgres = is_postgres(engine)
        if postgres and not has_primary_key(conn, table):
            build_primary_key(conn, table=table)
        if rebuild:
            drop_secondary_indexes(conn, table)
        else:
            ensure_secondary_indexes(conn, table)
        if postgres and defer_key and rebuild and table_name in DEFERRED_KEY_TABLES:
            drop_primary_key(conn, table)


def finish_rebuild(engine: Engine, table_name: str) -> None:
    """After a big load: build the missing indexes, side by side, and refresh the statistics.

    PostgreSQL builds each index in its own transaction and connection, so it sorts for
    them at the same time (one core each) instead of one after the other. SQLite (one
    writer at a time) builds them in turn and keeps its statistics as they were.
    """
    table = _table(table_name)
    if not is_postgres(engine):
        with engine.begin() as conn:
            ensure_secondary_indexes(conn, table)
        return
    with engine.connect() as conn:
        builds: list[Callable[[Connection], None]] = [
            partial(_build_index, index) for index in secondary_indexes(table)
        ]
        if not has_primary_key(conn, table):
            builds.append(partial(build_primary_key, table=table))
    side_by_side = len(builds) > 1

    def build(step: Callable[[Connection], None]) -> None:
        with engine.begin() as conn:
            if side_by_side:  # one core per index already: no parallel workers on top
                conn.execute(text("SET LOCAL max_parallel_maintenance_workers = 0"))
            step(conn)

    with ThreadPoolExecutor(max_workers=max(len(builds), 1), thread_name_prefix="index") as pool:
        for done in [pool.submit(build, step) for step in builds]:
            done.result()
    with engine.begin() as conn:
        conn.execute(text(f"ANALYZE {_quote_ident(table_name)}"))


def write_block(
    engine: Engine,
    table_name: str,
    good: pd.DataFrame,
    key: tuple[str, ...],
    on_conflict: OnConflict,
    quarantined: pd.DataFrame | None,
) -> int:
    """Upsert a block's good rows and insert its quarantined rows in one transaction.

    Quarantined rows are keyed on (file hash, entity, line), so a re-run adds none.
    Returns the number of good rows inserted or changed.
    """
    with engine.begin() as conn:
        changed = upsert_frame(conn, _table(table_name), good, key, on_conflict=on_conflict)
        if quarantined is not None and not quarantined.empty:
            upsert_frame(
                conn,
                QuarantinedRow.__table__,  # type: ignore[arg-type]
                quarantined,
                QUARANTINE_KEY,
                on_conflict="nothing",
            )
    return changed


def _build_index(index: Index, conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        # Index builds sort in memory up to this size instead of spilling to disk.
        conn.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
    index.create(conn, checkfirst=True)


def rename_quarantine_source(
    engine: Engine, *, sha256: str, entity: str, old: str, new: str
) -> None:
    """Point a file's quarantined rows at another source name (e.g. the s3:// object)."""
    with engine.begin() as conn:
        conn.execute(
            update(QuarantinedRow)
            .where(
                QuarantinedRow.source_sha256 == sha256,
                QuarantinedRow.entity == entity,
                QuarantinedRow.source == old,
            )
            .values(source=new)
        )
