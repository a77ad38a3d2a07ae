"""Loading one import file: read in blocks, validate, upsert good rows, quarantine the rest.

A mapped file (see `ingest.mapping`) loads into more than one table: its own entity's
rows, then the subscriptions and churn labels its mapping derives from each block.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nextoffer.domain.attributes import AttributeSpec
from nextoffer.domain.limits import storable
from nextoffer.domain.private_files import open_private, private_dir
from nextoffer.domain.spreadsheet import safe_cell
from nextoffer.ingest.attributes import AttributePlan, plan_attributes
from nextoffer.ingest.entities import Entity
from nextoffer.ingest.erased import ErasedIds
from nextoffer.ingest.layout import Layout
from nextoffer.ingest.reader import RawChunk, Rejected, iter_chunks, read_layout
from nextoffer.ingest.reshape import reshape
from nextoffer.ingest.sources import SourceFile
from nextoffer.ingest.validate import (
    DuplicateTracker,
    KeySet,
    ValidatedChunk,
    ValidationContext,
    validate_chunk,
)
from nextoffer.store import Engine, loading
from nextoffer.store.attributes import register_attributes
from nextoffer.store.bulk import OnConflict
from nextoffer.store.reads.attributes import attribute_schema
from nextoffer.store.runs import utcnow

ProgressFn = Callable[[int], None]


@dataclass
class FileResult:
    """What happened to one file (for a mapped file: to one of the tables it loads)."""

    source: str
    entity: str
    rows_read: int = 0
    rows_loaded: int = 0
    rows_changed: int = 0
    rows_quarantined: int = 0
    rows_erased: int = 0
    """Rows of customers erased on request: dropped, neither loaded nor quarantined."""


def load_known_ids(engine: Engine, entity_name: str) -> KeySet:
    """The ids already stored for an entity that others reference (products, customers)."""
    return KeySet(loading.stored_key_array(engine, entity_name))


def quarantine_file(quarantine_dir: Path, source: SourceFile, entity: Entity | None = None) -> Path:
    """Where a file's rejected rows are written: one CSV per input file, content and entity."""
    name = (entity or source.entity).name
    return quarantine_dir / f"{name}.{source.path.name}.{source.sha256[:12]}.csv"


def _quarantine_rows(
    source: SourceFile, entity: Entity, run_id: str, rejected: list[Rejected]
) -> pd.DataFrame:
    now = utcnow()
    return pd.DataFrame(
        {
            "entity": entity.name,
            "source": str(source.path),
            "source_sha256": source.sha256,
            "line": [r.line for r in rejected],
            "reason": [storable(r.reason) for r in rejected],
            "raw": [storable(r.raw) for r in rejected],
            "run_id": run_id,
            "quarantined_at": pd.Series([now] * len(rejected), dtype="datetime64[us, UTC]"),
        }
    )


@dataclass(frozen=True)
class LoadPlan:
    """How a file is written.

    `rebuild_indexes`: the load at least doubles the table (on SQLite: the table was
    empty), so secondary indexes are dropped and rebuilt once. `all_new`: the table was
    empty, so rows go straight in (PostgreSQL: COPY, the primary key built after).
    """

    rebuild_indexes: bool = False
    all_new: bool = False


def plan_load(
    engine: Engine,
    source: SourceFile,
    first_rows: int,
    first_bytes: int,
    entity: Entity | None = None,
) -> LoadPlan:
    """Decide, from the first block, whether this load is big relative to its table."""
    if first_bytes == 0:
        return LoadPlan()
    estimate, empty = loading.size_hint(engine, (entity or source.entity).name)
    expected_rows = first_rows * source.size / first_bytes
    return LoadPlan(rebuild_indexes=expected_rows >= estimate, all_new=empty)


@dataclass
class _Target:
    """One table a file loads into: its checks, counts, quarantine file and write plan."""

    entity: Entity
    ctx: ValidationContext
    result: FileResult
    qwriter: Any
    plan: LoadPlan | None = None
    attributes: tuple[AttributeSpec, ...] = ()
    in_flight: list[Future[int]] = field(default_factory=list)


def resolve_attributes(engine: Engine, layout: Layout, first_block: pd.DataFrame) -> AttributePlan:
    """Kinds and roles of the file's attribute columns, registered before its rows are.

    `first_block`: the file's first block with attributes under their stored names.
    """
    registered = {spec.name: spec for spec in attribute_schema(engine)}
    plan = plan_attributes(layout.declared, first_block, registered)
    register_attributes(engine, plan.declared, replace=True)
    register_attributes(engine, plan.inferred, replace=False)
    return plan


def load_file(
    engine: Engine,
    source: SourceFile,
    ctx: ValidationContext,
    *,
    run_id: str,
    block_bytes: int,
    quarantine_dir: Path,
    progress: ProgressFn | None = None,
    erased: ErasedIds | None = None,
) -> list[FileResult]:
    """Load one file block by block; each block commits its good rows and its rejects together.

    Returns one result per table loaded: the file's entity first, then (a mapped file) the
    entities its mapping derives. A run killed half way leaves whole blocks committed;
    running it again re-upserts the same rows (no change) and re-inserts quarantined rows
    keyed on (file hash, entity, line), so the end state is the same as one clean run.
    Validation of the next block overlaps the database write of the previous one (one
    writer thread, one block in flight). Rows of `erased` customers are dropped unread.
    """
    layout = read_layout(source)  # a header that cannot load fails before anything is written
    private_dir(quarantine_dir)  # rejected rows hold personal data: 0700, files 0600
    reported = 0
    targets: dict[str, _Target] = {}
    attribute_plan: AttributePlan | None = None

    # Quarantine files close only after the writer thread has finished with them.
    with (
        ExitStack() as files,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-writer") as pool,
    ):
        writer = _Writer(engine, pool, source, run_id)

        def target(entity: Entity) -> _Target:
            if entity.name not in targets:
                qfile = files.enter_context(
                    open_private(
                        quarantine_file(quarantine_dir, source, entity),
                        "w",
                        newline="",
                        encoding="utf-8",
                    )
                )
                qwriter = csv.writer(qfile)
                qwriter.writerow(["line", "reason", "raw"])
                own = entity.name == source.entity.name
                context = ctx if own else replace(ctx, duplicates=DuplicateTracker())
                targets[entity.name] = _Target(
                    entity, context, FileResult(str(source.path), entity.name), qwriter
                )
            return targets[entity.name]

        main = target(source.entity)
        for chunk in iter_chunks(source, block_bytes, layout):
            reshaped = reshape(source.mapping, chunk.frame) if source.mapping else None
            frame = layout.primary(chunk.frame if reshaped is None else reshaped.frame)
            if attribute_plan is None and layout.declared:
                attribute_plan = resolve_attributes(engine, layout, frame)
                main.attributes = attribute_plan.specs
            if attribute_plan is not None and attribute_plan.dropped:
                # Ignored by the registry (a mapping declared it once); declared ones are
                # not even read.
                frame = frame.drop(columns=list(attribute_plan.dropped), errors="ignore")
            # Erased customers' rows are dropped before validation: never quarantined.
            dropped = np.zeros(len(frame), dtype=bool) if erased is None else erased.mask(frame)
            kept = np.flatnonzero(~dropped)
            unparsed = [r for r in chunk.rejected if erased is None or not erased.in_text(r.raw)]
            main.result.rows_erased += int(dropped.sum()) + len(chunk.rejected) - len(unparsed)
            if dropped.any():
                frame = frame.iloc[kept]
            checked = validate_chunk(
                source.entity, frame, main.ctx, main.attributes, check_controls=not chunk.plain
            )
            rejected = _rejected(chunk, checked, kept, unparsed)
            for t in targets.values():  # the previous block's writes, in order
                for done in t.in_flight:
                    t.result.rows_changed += done.result()
                t.in_flight.clear()
            writer.submit(main, len(frame), chunk.bytes_read, checked, rejected)
            main.result.rows_read += len(chunk.frame) + len(chunk.rejected)
            good_rows = np.zeros(len(dropped), dtype=bool)
            good_rows[kept] = True
            good_rows[kept[checked.bad_positions]] = False
            for derived in () if reshaped is None else reshaped.derived:
                # Rows of a rejected customer are not loaded: its own reason says why.
                keep = good_rows[derived.origin]
                origin = derived.origin[keep]
                side = target(derived.entity)
                rows = derived.frame.loc[keep].reset_index(drop=True)
                checked_side = validate_chunk(derived.entity, rows, side.ctx)
                side_rejected = _one_per_line(_rejected(chunk, checked_side, origin, []))
                writer.submit(side, len(rows), chunk.bytes_read, checked_side, side_rejected)
                side.result.rows_read += len(checked_side.good) + len(side_rejected)
            if progress is not None:
                progress(chunk.bytes_read)
                reported += chunk.bytes_read
        for t in targets.values():
            for done in t.in_flight:
                t.result.rows_changed += done.result()
    for t in targets.values():
        if t.plan is not None and t.plan.rebuild_indexes:
            loading.finish_rebuild(engine, t.entity.name)
    if progress is not None and reported < source.size:
        progress(source.size - reported)  # the header line, or compressed-size differences
    return [t.result for t in targets.values()]


def _rejected(
    chunk: RawChunk, checked: ValidatedChunk, origin: np.ndarray, before: list[Rejected]
) -> list[Rejected]:
    """The block's rejected rows with their file line and raw text, in line order."""
    positions = [int(origin[p]) for p in checked.bad_positions]
    located = chunk.locate(positions)
    rejected = before + [
        Rejected(line, reason, raw)
        for (line, raw), reason in zip(located, checked.bad_reasons, strict=True)
    ]
    rejected.sort(key=lambda r: r.line)
    return rejected


def _one_per_line(rejected: list[Rejected]) -> list[Rejected]:
    """The first reason of each line: rows derived from one line share its quarantine key."""
    seen: set[int] = set()
    first = []
    for r in rejected:
        if r.line not in seen:
            seen.add(r.line)
            first.append(r)
    return first


@dataclass
class _Writer:
    """Hands blocks to the one writer thread, planning each table's load at its first block."""

    engine: Engine
    pool: ThreadPoolExecutor
    source: SourceFile
    run_id: str

    def submit(
        self,
        target: _Target,
        rows: int,
        block_bytes: int,
        checked: ValidatedChunk,
        rejected: list[Rejected],
    ) -> None:
        """Queue one table's good rows and rejects of a block (`rows` read, `block_bytes`)."""
        engine, entity = self.engine, target.entity
        if target.plan is None:
            target.plan = plan_load(engine, self.source, rows, block_bytes, entity)
            loading.prepare_indexes(
                engine,
                entity.name,
                rebuild=target.plan.rebuild_indexes,
                defer_key=target.plan.all_new,
            )
        plan = target.plan
        quarantined = (
            _quarantine_rows(self.source, entity, self.run_id, rejected) if rejected else None
        )
        qwriter = target.qwriter

        def write() -> int:
            # Keys are unique within a file (duplicates are quarantined), so into a table
            # that was empty when the file started, every row is new.
            mode: OnConflict = "fail" if plan.all_new else "update"
            changed = loading.write_block(
                engine, entity.name, checked.good, entity.key, mode, quarantined
            )
            # Raw lines are untrusted: a cell a spreadsheet would run as a formula is defused.
            qwriter.writerows(
                (r.line, safe_cell(storable(r.reason)), safe_cell(storable(r.raw)))
                for r in rejected
            )
            return changed

        target.in_flight.append(self.pool.submit(write))
        known = target.ctx.known
        if entity.name in known and not checked.good.empty:
            known[entity.name].add(checked.good[entity.key[0]])
        target.result.rows_loaded += len(checked.good)
        target.result.rows_quarantined += len(rejected)
