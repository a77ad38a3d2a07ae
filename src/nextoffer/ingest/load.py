"""Loading one import file: read in blocks, validate, upsert good rows, quarantine the rest."""

from __future__ import annotations

import csv
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from nextoffer.ingest.reader import Rejected, iter_chunks
from nextoffer.ingest.sources import SourceFile
from nextoffer.ingest.validate import KeySet, ValidationContext, validate_chunk
from nextoffer.store import Engine, loading
from nextoffer.store.bulk import OnConflict
from nextoffer.store.runs import utcnow

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
    return KeySet(pd.Index(loading.stored_keys(engine, entity_name), dtype=object))


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
    if first_bytes == 0:
        return LoadPlan()
    hint = loading.size_hint(engine, source.entity.name)
    if hint is None:  # SQLite: no COPY, no index rebuild
        return LoadPlan()
    estimate, empty = hint
    expected_rows = first_rows * source.size / first_bytes
    return LoadPlan(rebuild_indexes=expected_rows >= estimate, all_new=empty)


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
    result = FileResult(source=str(source.path), entity=entity.name)
    quarantine_dir.mkdir(parents=True, exist_ok=True)
    reported = 0
    plan: LoadPlan | None = None

    def write_block(good: pd.DataFrame, rejected: list[Rejected], qwriter: Any) -> int:
        assert plan is not None
        # Keys are unique within a file (duplicates are quarantined), so into a table
        # that was empty when the file started, every row is new.
        mode: OnConflict = "fail" if plan.all_new else "update"
        quarantined = _quarantine_rows(source, run_id, rejected) if rejected else None
        changed = loading.write_block(engine, entity.name, good, entity.key, mode, quarantined)
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
                loading.prepare_indexes(engine, entity.name, rebuild=plan.rebuild_indexes)
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
        loading.finish_rebuild(engine, entity.name)
    if progress is not None and reported < source.size:
        progress(source.size - reported)  # the header line, or compressed-size differences
    return result
