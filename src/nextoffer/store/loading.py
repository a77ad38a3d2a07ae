"""Table-level steps of a bulk file load, by table name: what ingest asks of the database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, Table, select, text, update

from nextoffer.store.bulk import (
    OnConflict,
    drop_secondary_indexes,
    ensure_secondary_indexes,
    upsert_frame,
)
from nextoffer.store.engine import is_postgres
from nextoffer.store.schema import Base, QuarantinedRow

if TYPE_CHECKING:
    import pandas as pd

QUARANTINE_KEY = ("source_sha256", "entity", "line")


def _table(name: str) -> Table:
    return Base.metadata.tables[name]


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def stored_keys(engine: Engine, table_name: str) -> list[Any]:
    """Every primary-key value of a table with a one-column key (products, customers)."""
    key_column = next(iter(_table(table_name).primary_key.columns))
    with engine.connect() as conn:
        return list(conn.execute(select(key_column)).scalars().all())


def size_hint(engine: Engine, table_name: str) -> tuple[float, bool] | None:
    """PostgreSQL: (the planner's row estimate, whether the table is empty); None elsewhere."""
    if not is_postgres(engine):
        return None
    with engine.connect() as conn:
        estimate = conn.execute(
            text("SELECT reltuples FROM pg_class WHERE oid = CAST(:t AS regclass)"),
            {"t": table_name},
        ).scalar()
        empty = conn.execute(
            text(f"SELECT NOT EXISTS (SELECT 1 FROM {_quote_ident(table_name)})")
        ).scalar()
    return max(float(estimate or 0), 0.0), bool(empty)


def prepare_indexes(engine: Engine, table_name: str, *, rebuild: bool) -> None:
    """Before a load: drop secondary indexes (`rebuild`, a big load) or make sure they exist."""
    table = _table(table_name)
    with engine.begin() as conn:
        if rebuild:
            drop_secondary_indexes(conn, table)
        else:
            ensure_secondary_indexes(conn, table)


def finish_rebuild(engine: Engine, table_name: str) -> None:
    """After a big load: build the secondary indexes again and refresh the statistics."""
    with engine.begin() as conn:
        ensure_secondary_indexes(conn, _table(table_name))
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
