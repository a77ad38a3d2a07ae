"""Offer-response events: written once, spooled to disk while the database is down, replayed."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nextoffer.domain.limits import BAD_ENCODING, date_problem, text_problem
from nextoffer.domain.vocabulary import Channel, EventType
from nextoffer.serving.spool import Spool, read_all
from nextoffer.serving.spool_replay import (
    SpoolLine,
    parse_lines,
    quarantine_rows,
    refused_reason,
    replay_files,
    write_quarantine_file,
)
from nextoffer.store import Connection, Engine
from nextoffer.store import events as store
from nextoffer.store.engine import is_database_down as is_database_down
from nextoffer.store.runs import utcnow

log = logging.getLogger(__name__)

OFFER_EVENT_TYPES = frozenset(
    {
        EventType.OFFER_IMPRESSION,
        EventType.OFFER_CLICK,
        EventType.OFFER_ACCEPT,
        EventType.OFFER_DECLINE,
    }
)
"""The event types the API accepts: responses to an offer, each naming its product."""

QUARANTINE_ENTITY = "events"

REPLAY_BATCH = 1000
"""Events per insert statement during replay; a whole file is still one transaction."""

_REQUIRED = ("event_id", "customer_id", "event_type", "product_id", "ts")
_OPTIONAL = ("channel", "session_id", "experiment_id", "variant")
_TEXT_FIELDS = ("event_id", "customer_id", "product_id", *_OPTIONAL)
# Widths come from the table so a request that validates here can never fail in the database
# with a DataError, which would not be a "database down" error and could not be spooled.
_MAX_LENGTH = store.text_limits(_TEXT_FIELDS)
# The import files' vocabulary: an event the API takes is one an import would load.
_CHANNELS = frozenset(c.value for c in Channel)


@dataclass(frozen=True)
class OfferEvent:
    """One response to an offer, as received by `POST /v1/events` and as spooled.

    `event_id` is the idempotency key: the same id is stored once however often it is sent.
    `ts` must be timezone-aware. Construction raises ValueError on anything the `events`
    table could not hold.
    """

    event_id: str
    customer_id: str
    event_type: EventType
    product_id: str
    ts: datetime
    channel: str | None = None
    session_id: str | None = None
    experiment_id: str | None = None
    variant: str | None = None

    def __post_init__(self) -> None:
        """Check the event and coerce a plain-string `event_type` to `EventType`."""
        try:
            kind = EventType(self.event_type)
        except ValueError:
            raise ValueError(f"event_type {self.event_type!r} is not an event type") from None
        if kind not in OFFER_EVENT_TYPES:
            allowed = ", ".join(sorted(OFFER_EVENT_TYPES))
            raise ValueError(f"event_type {kind.value!r} is not an offer event ({allowed})")
        # Frozen: the coerced value is set the one way a frozen dataclass allows.
        object.__setattr__(self, "event_type", kind)
        for name in _TEXT_FIELDS:
            value = getattr(self, name)
            if value is None and name in _OPTIONAL:
                continue
            if not isinstance(value, str):
                raise ValueError(f"{name} must be a string, got {type(value).__name__}")
            if name not in _OPTIONAL and not value:
                raise ValueError(f"{name} is empty")
            limit = _MAX_LENGTH.get(name)
            if limit is not None and len(value) > limit:
                raise ValueError(f"{name} is longer than {limit} characters")
            # PostgreSQL refuses NUL in text with an error, not a row: such an event must
            # never reach the database, nor the spool.
            if text_problem(value, len(value)) == BAD_ENCODING:
                raise ValueError(f"{name} contains NUL, a control character or invalid Unicode")
        if self.channel is not None and self.channel not in _CHANNELS:
            raise ValueError(
                f"channel {self.channel!r} is not a channel ({', '.join(sorted(_CHANNELS))})"
            )
        if not isinstance(self.ts, datetime):
            raise ValueError(f"ts must be a datetime, got {type(self.ts).__name__}")
        if self.ts.tzinfo is None or self.ts.utcoffset() is None:
            raise ValueError("ts has no time zone")
        if date_problem(self.ts.date()) is not None:
            raise ValueError(f"ts {self.ts.isoformat()} is outside 1900-2100")

    def to_json(self) -> str:
        """One spool line (without its newline): compact JSON, `ts` in ISO 8601 with offset."""
        payload: dict[str, str | None] = {
            "event_id": self.event_id,
            "customer_id": self.customer_id,
            "event_type": self.event_type.value,
            "product_id": self.product_id,
            "ts": self.ts.isoformat(),
        }
        for name in _OPTIONAL:
            payload[name] = getattr(self, name)
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str | bytes) -> OfferEvent:
        """The event of one spool line; ValueError when the line is not a valid event."""
        payload = json.loads(line)
        if not isinstance(payload, dict):
            raise ValueError("not a JSON object")
        missing = [name for name in _REQUIRED if name not in payload]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        unknown = sorted(set(payload) - set(_REQUIRED) - set(_OPTIONAL))
        if unknown:
            # Refused rather than dropped: a field this version does not know is data we
            # would otherwise lose silently; quarantine keeps the raw line.
            raise ValueError(f"unknown fields {', '.join(unknown)}")
        ts = payload["ts"]
        if not isinstance(ts, str):
            raise ValueError("ts is not a string")
        return cls(
            event_id=payload["event_id"],
            customer_id=payload["customer_id"],
            event_type=payload["event_type"],
            product_id=payload["product_id"],
            ts=datetime.fromisoformat(ts),
            **{name: payload.get(name) for name in _OPTIONAL},
        )

    def row(self) -> dict[str, Any]:
        """The `events` row; `ts` in UTC because SQLite stores the wall time and drops the zone."""
        return {
            "event_id": self.event_id,
            "customer_id": self.customer_id,
            "ts": self.ts.astimezone(UTC),
            "event_type": self.event_type.value,
            "product_id": self.product_id,
            "channel": self.channel,
            "session_id": self.session_id,
            "experiment_id": self.experiment_id,
            "variant": self.variant,
        }


@dataclass(frozen=True)
class RejectedEvent:
    """An event not written because it names a customer or product that does not exist."""

    event_id: str
    reason: str


@dataclass(frozen=True)
class RecordResult:
    """What `EventWriter.record` did with a request's events.

    `stored`: newly written; `duplicates`: their `event_id` was already stored (or repeated
    within the request); `spooled`: written to the local spool because the database was
    unreachable, to be stored by replay; `rejected`: unknown customer or product.
    """

    stored: int = 0
    duplicates: int = 0
    spooled: int = 0
    rejected: tuple[RejectedEvent, ...] = ()


@dataclass(frozen=True)
class ReplayResult:
    """What `EventWriter.replay` did: events stored, already there, quarantined; files left."""

    replayed: int = 0
    duplicates: int = 0
    quarantined: int = 0
    remaining_files: int = 0


@dataclass
class _Written:
    stored: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    """(position in the input, reason) of each event not written."""


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _write_events(conn: Connection, events: Sequence[OfferEvent]) -> _Written:
    """Check references and insert, inside the caller's transaction; idempotent on event_id.

    An impression also becomes a `contact_history` row (contact_id = event_id), which the
    contact caps count; it is written only with its newly stored event, so a duplicate
    changes nothing.
    """
    written = _Written()
    customers = store.existing_customers(conn, (e.customer_id for e in events))
    products = store.existing_products(conn, (e.product_id for e in events))
    seen: set[str] = set()
    good: list[OfferEvent] = []
    for position, event in enumerate(events):
        if event.customer_id not in customers:
            reason = f"unknown_customer: customer_id {event.customer_id!r} not found"
            written.rejected.append((position, reason))
        elif event.product_id not in products:
            reason = f"unknown_product: product_id {event.product_id!r} not found"
            written.rejected.append((position, reason))
        elif event.event_id in seen:
            written.duplicates += 1
        else:
            seen.add(event.event_id)
            good.append(event)
    for batch in _chunks(good, REPLAY_BATCH):
        stored = store.insert_events(conn, [e.row() for e in batch])
        written.stored += len(stored)
        written.duplicates += len(batch) - len(stored)
        contacts = [
            {
                "contact_id": e.event_id,
                "customer_id": e.customer_id,
                "product_id": e.product_id,
                "channel": e.channel,
                "contacted_at": e.ts.astimezone(UTC),
                "outcome": None,
            }
            for e in batch
            if e.event_type is EventType.OFFER_IMPRESSION and e.event_id in stored
        ]
        store.insert_contacts(conn, contacts)
    return written


class EventWriter:
    """Writes offer events exactly once, spooling them to a local file while the DB is down.

    Several processes (API replicas) may share `spool_dir`; `nextoffer.serving.spool` says
    how they stay out of each other's way.
    """

    def __init__(self, engine: Engine, spool_dir: Path, *, process_tag: str | None = None) -> None:
        """Write through `engine`; spool to `spool_dir`, created on first use."""
        self.engine = engine
        self.spool = Spool(spool_dir, process_tag=process_tag)

    @property
    def spool_dir(self) -> Path:
        """The folder of every process's spool files."""
        return self.spool.directory

    @property
    def spool_file(self) -> Path:
        """The spool file of this process."""
        return self.spool.file

    # --- write path -------------------------------------------------------------------

    def record(self, events: Sequence[OfferEvent]) -> RecordResult:
        """Store `events` in one transaction, or spool them all if the database is down.

        Raises OSError only when the database is down and the spool cannot be written
        either: then nothing was accepted and the caller must report failure.
        """
        if not events:
            return RecordResult()
        try:
            with self.engine.begin() as conn:
                written = _write_events(conn, events)
        except Exception as exc:
            if not is_database_down(exc):
                raise
            # The outcome of a commit cut off mid-way is unknown; spooling everything is
            # still right, as replay skips whatever did get stored.
            self.spool.append([e.to_json() for e in events])
            log.warning(
                "database unreachable, %d events spooled to %s: %s",
                len(events),
                self.spool_file,
                exc.__class__.__name__,
            )
            return RecordResult(spooled=len(events))
        rejected = tuple(RejectedEvent(events[i].event_id, why) for i, why in written.rejected)
        return RecordResult(stored=written.stored, duplicates=written.duplicates, rejected=rejected)

    # --- replay -----------------------------------------------------------------------

    def spool_files(self) -> list[Path]:
        """Every spool file in `spool_dir`, of any process, claimed by a replayer or not."""
        return self.spool.files()

    def spool_depth(self) -> int:
        """Events waiting in spool files (non-empty lines), for a gauge."""
        return self.spool.depth()

    def replay(self) -> ReplayResult:
        """Store every spooled event, quarantine the unusable ones, remove replayed files.

        Each file is one transaction and is removed only after it committed; a crash in
        between only makes the next replay find its events already stored. Stops at the
        first sign that the database is still down, leaving the files for next time.
        """
        counts = replay_files(self.spool, self.engine, self._replay_file, "event")
        return ReplayResult(
            counts.stored, counts.duplicates, counts.quarantined, counts.remaining_files
        )

    def _replay_file(self, path: Path, fd: int, run_id: str) -> tuple[int, int, int]:
        """Store a claimed file's events; what cannot be stored goes to quarantine.

        The whole file is one transaction. When the database refuses it for a reason other
        than being down (a line it cannot hold), the file is written again one event per
        transaction, so the refused lines alone are quarantined and the rest stored: a
        poisoned line never blocks the spool. Quarantined lines go to the `quarantine`
        table and, byte for byte, to a file under the spool's `quarantine/` folder.
        """
        content = read_all(fd)
        lines = parse_lines(content, OfferEvent.from_json)
        bad = [(line.line, line.raw, line.reason) for line in lines if line.reason is not None]
        good = [line for line in lines if line.value is not None]
        now = utcnow()
        try:
            with self.engine.begin() as conn:
                stored, duplicates, rejected = self._write_lines(conn, good)
                bad.extend(rejected)
                if bad:
                    rows = quarantine_rows(QUARANTINE_ENTITY, path, content, run_id, bad, now)
                    store.insert_quarantined(conn, rows)
        except Exception as exc:
            if is_database_down(exc):
                raise
            log.warning(
                "spool file %s refused as a whole (%s); storing it event by event",
                path.name,
                refused_reason(exc),
            )
            stored, duplicates, rejected = self._write_one_by_one(good)
            bad.extend(rejected)
            self._quarantine_rows(path, content, run_id, bad, now)
        if bad:
            kept = write_quarantine_file(self.spool.directory, path, content, bad, now)
            log.warning("%d spooled events quarantined to %s", len(bad), kept)
        self.spool.remove(path)
        return stored, duplicates, len(bad)

    @staticmethod
    def _write_lines(
        conn: Connection, lines: Sequence[SpoolLine[OfferEvent]]
    ) -> tuple[int, int, list[tuple[int, str, str]]]:
        stored = duplicates = 0
        rejected: list[tuple[int, str, str]] = []
        for batch in _chunks(lines, REPLAY_BATCH):
            written = _write_events(conn, [line.value for line in batch if line.value])
            stored += written.stored
            duplicates += written.duplicates
            rejected.extend((batch[i].line, batch[i].raw, why) for i, why in written.rejected)
        return stored, duplicates, rejected

    def _write_one_by_one(
        self, lines: Sequence[SpoolLine[OfferEvent]]
    ) -> tuple[int, int, list[tuple[int, str, str]]]:
        # Slow, but only for a file the database refused; each insert is idempotent, so a
        # crash half-way only makes the next replay find these events already stored.
        stored = duplicates = 0
        refused: list[tuple[int, str, str]] = []
        for line in lines:
            try:
                with self.engine.begin() as conn:
                    new, dup, rejected = self._write_lines(conn, [line])
            except Exception as exc:
                if is_database_down(exc):
                    raise
                refused.append((line.line, line.raw, refused_reason(exc)))
                continue
            stored, duplicates = stored + new, duplicates + dup
            refused.extend(rejected)
        return stored, duplicates, refused

    def _quarantine_rows(
        self,
        path: Path,
        content: bytes,
        run_id: str,
        bad: list[tuple[int, str, str]],
        now: datetime,
    ) -> None:
        if not bad:
            return
        try:
            with self.engine.begin() as conn:
                rows = quarantine_rows(QUARANTINE_ENTITY, path, content, run_id, bad, now)
                store.insert_quarantined(conn, rows)
        except Exception as exc:
            if is_database_down(exc):
                raise
            # The quarantine file still keeps every line with its reason.
            log.warning("quarantine rows of %s not stored: %s", path.name, refused_reason(exc))


def start_replayer(
    writer: EventWriter, interval_s: float, stop: threading.Event
) -> threading.Thread:
    """A daemon thread replaying `writer`'s spool every `interval_s` while files wait.

    It checks once at start (files left by a previous run), never dies on an error (each is
    logged and the next round tries again) and ends when `stop` is set.
    """

    def run() -> None:
        while not stop.is_set():
            try:
                if writer.spool_files():
                    writer.replay()
            except Exception:
                log.exception("spool replay failed; retrying in %g s", interval_s)
            stop.wait(interval_s)

    thread = threading.Thread(target=run, name="nextoffer-event-replayer", daemon=True)
    thread.start()
    return thread
