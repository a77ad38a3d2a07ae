"""Loading one import file: read in blocks, validate, upsert good rows, quarantine the rest."""

from __future__ import annotations

import csv
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine, select, text

from nextoffer.ingest.reader import Rejected, iter_chunks
from nextoffer.ingest.sources import SourceFile
from nextoffer.ingest.validate import KeySet, ValidationContext, validate_chunk
from nextoffer.store.bulk import (
    OnConflict,
    drop_secondary_indexes,
    ensure_secondary_indexes,
    upsert_frame,
)
from nextoffer.store.engine import is_postgres
from nextoffer.store.runs import utcnow
from nextoffer.store.schema import Base, QuarantinedRow

ProgressFn = Callable[[int], None]


@dataclass
class FileResult:
    """What happened to one file."""

    source: str
    entity: str
    rows_read: int = 0
    rows_loaded: int = 0
    rows_changed: int = 0
    rows_quarantined: int = 0


def load_known_ids(engine: Engine, entity_name: str) -> KeySet:
    """The ids already stored for an entity that others reference (products, customers)."""
    table = Base.metadata.tables[entity_name]
    key_column = next(iter(table.primary_key.columns))
    with engine.connect() as conn:
        ids = pd.Index(conn.execute(select(key_column)).scalars().all(), dtype=object)
    return KeySet(ids)


def quarantine_file(quarantine_dir: Path, source: SourceFile) -> Path:
    """Where a file's rejected rows are written: one CSV per input file and content."""
    return quarantine_dir / f"{source.entity.name}.{source.path.name}.{source.sha256[:12]}.csv"


def _quarantine_rows(source: SourceFile, run_id: str, rejected: list[Rejected]) -> pd.DataFrame:
    now = utcnow()
    return pd.DataFrame(
        {
            "entity": source.entity.name,
            "source": str(source.path),
            "source_sha256": source.sha256,
            "line": [r.line for r in rejected],
            "reason": [r.reason for r in rejected],
            "raw": [r.raw for r in rejected],
            "run_id": run_id,
            "quarantined_at": pd.Series([now] * len(rejected), dtype="datetime64[us, UTC]"),
        }
    )


@dataclass(frozen=True)
class LoadPlan:
    """How a file is written to PostgreSQL.

    `rebuild_indexes`: the load at least doubles the table, so secondary indexes are
    dropped and rebuilt once. `all_new`: the table was empty, so rows are COPYed straight in.
    """

    rebuild_indexes: bool = False
    all_new: bool = False


def plan_load(engine: Engine, source: SourceFile, first_rows: int, first_bytes: int) -> LoadPlan:
    """Decide, from the first block, whether this load is big relative to its table."""
    if not is_postgres(engine) or first_bytes == 0:
        return LoadPlan()
    expected_rows = first_rows * source.size / first_bytes
    table = _quote_ident(source.entity.name)
    with engine.connect() as conn:
        estimate = conn.execute(
            text("SELECT reltuples FROM pg_class WHERE oid = CAST(:t AS regclass)"),
            {"t": source.entity.name},
        ).scalar()
        empty = conn.execute(text(f"SELECT NOT EXISTS (SELECT 1 FROM {table})")).scalar()
    big = expected_rows >= max(float(estimate or 0), 0.0)
    return LoadPlan(rebuild_indexes=big, all_new=bool(empty))


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def load_file(
    engine: Engine,
    source: SourceFile,
    ctx: ValidationContext,
    *,
    run_id: str,
    block_bytes: int,
    quarantine_dir: Path,
    progress: ProgressFn | None = None,
) -> FileResult:
    """Load one file block by block; each block commits its good rows and its rejects together.

    A run killed half way leaves whole blocks committed; running it again re-upserts the
    same rows (no change) and re-inserts quarantined rows keyed on (file hash, line), so
    the end state is the same as one clean run. Validation of the next block overlaps the
    database write of the previous one (one writer thread, one block in flight).
    """
    entity = source.entity
    table = Base.metadata.tables[entity.name]
    result = FileResult(source=str(source.path), entity=entity.name)
    quarantine_dir.mkdir(parents=True, exist_ok=True)
    reported = 0
    plan: LoadPlan | None = None

    def write_block(good: pd.DataFrame, rejected: list[Rejected], qwriter: Any) -> int:
        assert plan is not None
        with engine.begin() as conn:
            # Keys are unique within a file (duplicates are quarantined), so into a table
            # that was empty when the file started, every row is new.
            mode: OnConflict = "fail" if plan.all_new else "update"
            changed = upsert_frame(conn, table, good, entity.key, on_conflict=mode)
            if rejected:
                upsert_frame(
                    conn,
                    QuarantinedRow.__table__,  # type: ignore[arg-type]
                    _quarantine_rows(source, run_id, rejected),
                    ("source_sha256", "entity", "line"),
                    on_conflict="nothing",
                )
        qwriter.writerows((r.line, r.reason, r.raw) for r in rejected)
        return changed

    with (
        quarantine_file(quarantine_dir, source).open("w", newline="", encoding="utf-8") as qfile,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-writer") as pool,
    ):
        qwriter = csv.writer(qfile)
        qwriter.writerow(["line", "reason", "raw"])
        in_flight: Future[int] | None = None
        for chunk in iter_chunks(source, block_bytes):
            checked = validate_chunk(entity, chunk.frame, ctx)
            located = chunk.locate(checked.bad_positions)
            rejected = chunk.rejected + [
                Rejected(line, reason, raw)
                for (line, raw), reason in zip(located, checked.bad_reasons, strict=True)
            ]
            rejected.sort(key=lambda r: r.line)
            if plan is None:
                plan = plan_load(engine, source, len(chunk.frame), chunk.bytes_read)
                with engine.begin() as conn:
                    if plan.rebuild_indexes:
                        drop_secondary_indexes(conn, table)
                    else:
                        ensure_secondary_indexes(conn, table)
            if in_flight is not None:
                result.rows_changed += in_flight.result()
            in_flight = pool.submit(write_block, checked.good, rejected, qwriter)
            if entity.name in ctx.known and not checked.good.empty:
                ctx.known[entity.name].add(checked.good[entity.key[0]])
            result.rows_read += len(chunk.frame) + len(chunk.rejected)
            result.rows_loaded += len(checked.good)
            result.rows_quarantined += len(rejected)
            if progress is not None:
                progress(chunk.bytes_read)
                reported += chunk.bytes_read
        if in_flight is not None:
            result.rows_changed += in_flight.result()
    if plan is not None and plan.rebuild_indexes:
        with engine.begin() as conn:
            ensure_secondary_indexes(conn, table)
            conn.execute(text(f'ANALYZE "{entity.name}"'))
    if progress is not None and reported < source.size:
        progress(source.size - reported)  # the header line, or compressed-size differences
    return result
