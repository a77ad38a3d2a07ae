"""Replaying a spool into the database: claim each file, write it whole, quarantine bad lines.

Shared by the events and the exposures spools (`serving.spool` says how files are shared
and claimed). Each file is written in one transaction and removed only after it committed;
a crash in between only makes the next replay find its rows already stored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from nextoffer.serving.spool import SPOOL_SUFFIX, Spool, fsync_dir, original_name
from nextoffer.store import Engine
from nextoffer.store.engine import is_database_down, ping

log = logging.getLogger(__name__)

T = TypeVar("T")

TRUNCATED_REASON = "truncated spool line"
QUARANTINE_SUBDIR = "quarantine"
"""Where the lines a replay could not store are kept, byte for byte, inside a spool folder."""

ReplayFile = Callable[[Path, int, str], tuple[int, int, int]]
"""Replays one claimed file (path, locked fd, run id): (stored, duplicates, quarantined)."""


@dataclass(frozen=True)
class ReplayCounts:
    """What one replay round did over every file: rows stored, already there, quarantined."""

    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    remaining_files: int = 0


@dataclass(frozen=True)
class SpoolLine(Generic[T]):
    """One non-empty line of a spool file: parsed into `value`, or with the `reason` it is not."""

    line: int
    raw: str
    value: T | None
    reason: str | None


def parse_lines(content: bytes, parse: Callable[[bytes], T]) -> list[SpoolLine[T]]:
    """Every non-empty line of a spool file, parsed by `parse`, or with why it cannot be."""
    pieces = content.split(b"\n")
    # After the last newline: empty for a complete file, else a line cut by a crash mid-write.
    # It was never acknowledged (the fsync comes after the newline), so it is quarantined.
    tail = pieces.pop()
    lines: list[SpoolLine[T]] = []
    for number, piece in enumerate(pieces, start=1):
        if not piece.strip():
            continue
        raw = spool_text(piece)
        try:
            lines.append(SpoolLine(number, raw, parse(piece), None))
        except (ValueError, TypeError) as exc:
            lines.append(SpoolLine(number, raw, None, f"invalid spool line: {exc}"))
    if tail.strip(b" \t\r\x00"):
        lines.append(SpoolLine(len(pieces) + 1, spool_text(tail), None, TRUNCATED_REASON))
    return lines


def spool_text(raw: bytes) -> str:
    """A spool line as text a database can hold, whatever its bytes."""
    # PostgreSQL text cannot hold NUL, which a crash can leave in a file's unwritten tail.
    return raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def quarantine_rows(
    entity: str,
    path: Path,
    content: bytes,
    run_id: str,
    bad: list[tuple[int, str, str]],
    now: datetime,
) -> list[dict[str, Any]]:
    """`quarantine` rows for the (line, raw, reason) of a spool file that cannot be stored."""
    source = original_name(path.name)
    sha256 = hashlib.sha256(content).hexdigest()
    return [
        {
            "entity": entity,
            "source": source,
            "source_sha256": sha256,
            "line": line,
            "reason": reason,
            "raw": raw,
            "run_id": run_id,
            "quarantined_at": now,
        }
        for line, raw, reason in sorted(bad)
    ]


def refused_reason(exc: BaseException) -> str:
    """Why the database (or the row's own conversion) refused one line, in one line."""
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"refused when stored: {type(exc).__name__}: {detail[0][:300] if detail else ''}"


def write_quarantine_file(
    directory: Path,
    path: Path,
    content: bytes,
    bad: list[tuple[int, str, str]],
    now: datetime,
) -> Path:
    """Keep the (line, raw, reason) of a spool file that cannot be stored in a file of its own.

    One JSON object a line: source file, line number, reason and the line's exact text
    (NUL and all, JSON-escaped). Named after the spool file and its content's hash, and
    written whole (temporary file, fsync, rename), so a replay repeated after a crash
    rewrites the same file rather than adding a second. Owner-only: events name customers.
    """
    folder = directory / QUARANTINE_SUBDIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    source = original_name(path.name)
    digest = hashlib.sha256(content).hexdigest()[:16]
    target = folder / f"{source.removesuffix(SPOOL_SUFFIX)}-{digest}{SPOOL_SUFFIX}"
    pieces = content.split(b"\n")
    records = [
        json.dumps(
            {
                "source": source,
                "line": line,
                "reason": reason,
                "quarantined_at": now.isoformat(),
                "raw": pieces[line - 1].decode("utf-8", errors="replace"),
            }
        )
        for line, _raw, reason in sorted(bad)
    ]
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview("".join(f"{record}\n" for record in records).encode())
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    temporary.replace(target)
    fsync_dir(folder)
    return target


def replay_files(spool: Spool, engine: Engine, replay_file: ReplayFile, what: str) -> ReplayCounts:
    """Replay every file of `spool` with `replay_file`; files that fail stay for next time.

    The database is checked before anything is claimed, so a database still down costs one
    connect attempt, not a rename and give-back of every file each round; a file that fails
    because it went down again stops the round.
    """
    paths = spool.files()
    if not paths:
        return ReplayCounts()
    try:
        ping(engine)
    except Exception as exc:
        if not is_database_down(exc):
            raise
        log.debug("database unreachable, %s spool replay waits: %s", what, exc)
        return ReplayCounts(remaining_files=len(paths))
    run_id = str(uuid.uuid4())
    stored = duplicates = quarantined = 0
    for path in paths:
        with spool.claim(path) as claimed:
            if claimed is None:
                continue
            claimed_path, fd = claimed
            try:
                new, dup, bad = replay_file(claimed_path, fd, run_id)
            except Exception as exc:
                spool.give_back(claimed_path)
                if is_database_down(exc):
                    log.info("database still unreachable, %s spool replay stopped: %s", what, exc)
                    break
                log.exception("%s spool file %s not replayed, left in place", what, path.name)
                continue
            stored, duplicates, quarantined = stored + new, duplicates + dup, quarantined + bad
    remaining = len(spool.files())
    if stored or duplicates or quarantined:
        log.info(
            "%s spool replayed: %d stored, %d duplicates, %d quarantined, %d files left",
            what,
            stored,
            duplicates,
            quarantined,
            remaining,
        )
    return ReplayCounts(stored, duplicates, quarantined, remaining)
