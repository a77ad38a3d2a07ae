"""The ingest job: every import file of a folder, validated, upserted and quarantined."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine

from nextoffer.config import Settings
from nextoffer.ingest.load import FileResult, load_file, load_known_ids
from nextoffer.ingest.sources import SourceFile, discover
from nextoffer.ingest.validate import DuplicateTracker, ValidationContext
from nextoffer.store.runs import recorded_run, utcnow

REFERENCED = ("products", "customers")


@dataclass
class IngestResult:
    """Counts of one ingest run, per file and in total."""

    run_id: str
    files: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows_read(self) -> int:
        """Rows seen in every file."""
        return sum(f.rows_read for f in self.files)

    @property
    def rows_loaded(self) -> int:
        """Rows that passed validation and are now stored."""
        return sum(f.rows_loaded for f in self.files)

    @property
    def rows_changed(self) -> int:
        """Rows inserted or updated (0 when the same input is loaded again)."""
        return sum(f.rows_changed for f in self.files)

    @property
    def rows_quarantined(self) -> int:
        """Rows rejected with a reason."""
        return sum(f.rows_quarantined for f in self.files)

    def summary(self) -> str:
        """The one-line summary printed at the end of a run."""
        rate = self.rows_read / self.seconds if self.seconds > 0 else 0.0
        return (
            f"ingest: {self.rows_read:,} rows read · {self.rows_loaded:,} loaded "
            f"({self.rows_changed:,} new or changed) · {self.rows_quarantined:,} quarantined · "
            f"{self.seconds:.1f} s ({rate:,.0f} rows/s)"
        )


def run_ingest(
    engine: Engine,
    settings: Settings,
    path: Path,
    *,
    on_start: Callable[[list[SourceFile]], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> IngestResult:
    """Ingest every import file under `path` in dependency order, recording the run."""
    started = time.perf_counter()
    sources = discover(path)
    if on_start is not None:
        on_start(sources)
    with recorded_run(engine, "ingest") as run:
        result = IngestResult(run_id=run.run_id)
        now = utcnow() + timedelta(seconds=settings.ingest_clock_skew_s)
        known = {name: load_known_ids(engine, name) for name in REFERENCED}
        for source in sources:
            ctx = ValidationContext(now=now, known=known, duplicates=DuplicateTracker())
            result.files.append(
                load_file(
                    engine,
                    source,
                    ctx,
                    run_id=run.run_id,
                    block_bytes=settings.ingest_block_bytes,
                    quarantine_dir=settings.quarantine_dir,
                    progress=progress,
                )
            )
        result.seconds = time.perf_counter() - started
        run.counts = {
            "rows_read": result.rows_read,
            "rows_loaded": result.rows_loaded,
            "rows_changed": result.rows_changed,
            "rows_quarantined": result.rows_quarantined,
            "files": len(result.files),
        }
    return result
