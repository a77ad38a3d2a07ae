"""Exposures off the request path: buffered, written in batches, spooled while the DB is down.

A request only appends to the buffer (`ExposureRecorder.record`); a background thread
(`start_flusher`) writes the buffer every `NEXTOFFER_EXPOSURE_FLUSH_S` and replays the
spool. At most one exposure per unit a day: ids already queued by this process are
skipped (a bounded set), and the database ignores an id it already holds (other replicas,
replays). While the database is unreachable a batch is appended to this process's spool
file under `<spool dir>/exposures` (the events spool's protocol, `serving.spool`) and
written later, idempotently, so nothing is lost and nothing is counted twice.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date
from pathlib import Path
from typing import Protocol

from nextoffer.domain.exposures import ExposureRecord
from nextoffer.serving.spool import Spool, read_all
from nextoffer.serving.spool_replay import (
    ReplayCounts,
    parse_lines,
    quarantine_rows,
    replay_files,
)
from nextoffer.store import Connection, Engine
from nextoffer.store import events as event_store
from nextoffer.store import exposures as store
from nextoffer.store.engine import is_database_down
from nextoffer.store.runs import utcnow

log = logging.getLogger(__name__)

SPOOL_SUBDIR = "exposures"
"""The exposures' own folder inside the events spool folder."""
SPOOL_PREFIX = "exposures-"
QUARANTINE_ENTITY = "exposures"
MAX_QUEUED_IDS = 200_000
"""Exposure ids remembered as already queued (the oldest are forgotten first)."""
MAX_BUFFER = 100_000
"""Exposures waiting for the flusher; beyond this new ones are dropped (and logged)."""

Stored = Callable[[str, str, int], None]
"""Called with (arm, source, how many) for exposures newly written to the database."""


@dataclass(frozen=True)
class FlushResult:
    """What one flush did: newly stored, already there, spooled, or naming no customer."""

    stored: int = 0
    duplicates: int = 0
    spooled: int = 0
    rejected: int = 0


ExposureReplay = ReplayCounts
"""What one spool replay did; `remaining_files` are left for the next round."""


class ExposureRecorder:
    """Thread-safe buffer of exposures, flushed to the database or to a spool."""

    def __init__(
        self,
        engine: Engine,
        spool_dir: Path,
        *,
        share: float,
        enabled: bool = True,
        process_tag: str | None = None,
        on_stored: Stored | None = None,
        on_spooled: Callable[[int], None] | None = None,
        max_queued_ids: int = MAX_QUEUED_IDS,
        max_buffer: int = MAX_BUFFER,
    ) -> None:
        """Write through `engine`; spool to `spool_dir` (created on first use).

        `share` is the control-group share recorded with customers entering the group.
        """
        self.engine = engine
        self.enabled = enabled
        self.share = share
        self.spool = Spool(spool_dir, process_tag=process_tag, prefix=SPOOL_PREFIX)
        self._on_stored = on_stored or (lambda _arm, _source, _n: None)
        self._on_spooled = on_spooled or (lambda _n: None)
        self._max_ids = max_queued_ids
        self._max_buffer = max_buffer
        self._buffer: list[ExposureRecord] = []
        self._queued: dict[str, None] = {}  # insertion-ordered: the oldest id goes first
        self._day: date | None = None
        self._dropped = 0
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()

    # --- the request path -----------------------------------------------------------------

    def record(self, exposure: ExposureRecord) -> bool:
        """Queue `exposure` unless its id (unit and day) is already queued; True when queued."""
        if not self.enabled:
            return False
        day = exposure.exposed_at.astimezone(UTC).date()
        with self._lock:
            if self._day is None or day > self._day:
                # Ids name their day: yesterday's can no longer repeat, so they are let go.
                self._queued.clear()
                self._day = day
            if exposure.exposure_id in self._queued:
                return False
            if len(self._buffer) >= self._max_buffer:
                self._dropped += 1
                if self._dropped == 1 or self._dropped % 10_000 == 0:
                    log.warning("exposure buffer full: %d exposures dropped", self._dropped)
                return False
            self._queued[exposure.exposure_id] = None
            if len(self._queued) > self._max_ids:
                del self._queued[next(iter(self._queued))]
            self._buffer.append(exposure)
        return True

    def record_many(self, exposures: Iterable[ExposureRecord]) -> int:
        """`record` each; how many were queued."""
        return sum(self.record(e) for e in exposures)

    def pending(self) -> int:
        """Exposures queued and not yet flushed."""
        with self._lock:
            return len(self._buffer)

    # --- the write path -------------------------------------------------------------------

    def flush(self) -> FlushResult:
        """Write what is queued in one transaction, or spool it when the database is down.

        A batch that cannot be written (the database down, or any other error, logged) is
        spooled for a retry. Raises OSError only when the spool cannot be written either.
        """
        with self._flush_lock:
            with self._lock:
                batch, self._buffer = self._buffer, []
            if not batch:
                return FlushResult()
            try:
                with self.engine.begin() as conn:
                    stored, rejected = self._write(conn, batch)
            except Exception as exc:
                # Whatever went wrong, the batch is kept: spooled, it is retried (and a line
                # that cannot be read is quarantined) instead of being lost with this error.
                if not is_database_down(exc):
                    log.exception("%d exposures not written; spooled for a retry", len(batch))
                self.spool.append([e.to_json() for e in batch])
                self._on_spooled(len(batch))
                log.warning(
                    "%d exposures spooled to %s: %s",
                    len(batch),
                    self.spool.file,
                    exc.__class__.__name__,
                )
                return FlushResult(spooled=len(batch))
            self._count(batch, stored)
            duplicates = len(batch) - len(stored) - rejected
            return FlushResult(stored=len(stored), duplicates=duplicates, rejected=rejected)

    def _write(self, conn: Connection, batch: Sequence[ExposureRecord]) -> tuple[set[str], int]:
        """Insert the exposures of known customers and the control-group entries they make."""
        known = event_store.existing_customers(conn, (e.customer_id for e in batch))
        good = [e for e in batch if e.customer_id in known]
        stored = store.insert_exposures(conn, [e.row() for e in good])
        # The first day a customer was held out, of the exposures stored now: a replayed
        # exposure already in the table changes nothing.
        entries: dict[str, date] = {}
        for exposure in good:
            if exposure.universal_control and exposure.exposure_id in stored:
                day = exposure.exposed_at.astimezone(UTC).date()
                entries[exposure.customer_id] = min(day, entries.get(exposure.customer_id, day))
        store.enter_control_group(conn, entries, self.share)
        return stored, len(batch) - len(good)

    def _count(self, batch: Sequence[ExposureRecord], stored: set[str]) -> None:
        counts = Counter((e.arm.value, e.source.value) for e in batch if e.exposure_id in stored)
        for (arm, source), n in counts.items():
            self._on_stored(arm, source, n)

    # --- the spool ------------------------------------------------------------------------

    def spool_files(self) -> list[Path]:
        """Every exposure spool file, of any process, claimed or not."""
        return self.spool.files()

    def spool_depth(self) -> int:
        """Exposures waiting in spool files, for a gauge."""
        return self.spool.depth()

    def replay(self) -> ExposureReplay:
        """Write every spooled exposure; unusable lines go to quarantine; replayed files go.

        Each file is one transaction, removed only after it committed. Stops at the first
        sign that the database is still down, leaving the files for the next round.
        """
        return replay_files(self.spool, self.engine, self._replay_file, "exposure")

    def _replay_file(self, path: Path, fd: int, run_id: str) -> tuple[int, int, int]:
        content = read_all(fd)
        lines = parse_lines(content, ExposureRecord.from_json)
        good = [line.value for line in lines if line.value is not None]
        bad = [(line.line, line.raw, line.reason) for line in lines if line.reason is not None]
        stored: set[str] = set()
        rejected = 0
        if lines:
            with self.engine.begin() as conn:
                if good:
                    stored, rejected = self._write(conn, good)
                if bad:
                    rows = quarantine_rows(QUARANTINE_ENTITY, path, content, run_id, bad, utcnow())
                    event_store.insert_quarantined(conn, rows)
        self.spool.remove(path)
        self._count(good, stored)
        return len(stored), len(good) - len(stored) - rejected, len(bad)


def exposure_spool_dir(events_spool_dir: Path) -> Path:
    """Where exposures are spooled: their own folder inside the events spool folder."""
    return Path(events_spool_dir) / SPOOL_SUBDIR


class Flushing(Protocol):
    """A buffered writer with a spool: the exposure recorder, the audit trail."""

    def flush(self) -> object:
        """Write what is queued, or spool it."""
        ...

    def spool_files(self) -> list[Path]:
        """Its spool files."""
        ...

    def replay(self) -> ReplayCounts:
        """Write what is spooled."""
        ...


def start_flusher(
    recorder: Flushing, interval_s: float, stop: threading.Event, what: str = "exposure"
) -> threading.Thread:
    """A daemon thread that flushes `recorder` every `interval_s` and replays its spool.

    It never dies on an error (each is logged and the next round tries again) and, once
    `stop` is set, flushes one last time and ends. `what` names it in logs and threads.
    """

    def run() -> None:
        while True:
            stopping = stop.wait(interval_s)
            try:
                recorder.flush()
                if recorder.spool_files():
                    recorder.replay()
            except Exception:
                log.exception("%s flush failed; retrying in %g s", what, interval_s)
            if stopping:
                return

    thread = threading.Thread(target=run, name=f"nextoffer-{what}-flusher", daemon=True)
    thread.start()
    return thread
