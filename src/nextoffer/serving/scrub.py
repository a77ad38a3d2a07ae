"""Removing erased customers from files under VAR_DIR: spooled lines and quarantine files.

Spool files are JSON lines appended under an exclusive `flock` (`serving.spool`); a scrub
takes the same lock, so no append or replay is half way through while the file is
rewritten in place. Quarantine files are CSV (a record may span lines): rewritten whole,
atomically, without the records that mention the customer.
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
import re
from pathlib import Path

from nextoffer.serving.spool import read_all


def scrub_tree(root: Path, pattern: re.Pattern[str]) -> int:
    """Scrub every file under `root`; the number of lines or records removed."""
    if not root.is_dir():
        return 0
    removed = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        if path.suffix == ".csv":
            removed += scrub_csv(path, pattern)
        else:
            removed += scrub_lines(path, pattern)
    return removed


def scrub_lines(path: Path, pattern: re.Pattern[str]) -> int:
    """Drop the lines of `path` that match, under the spool's lock; the number dropped."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:  # replayed and removed meanwhile
        return 0
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        text = read_all(fd).decode("utf-8", errors="surrogateescape")
        lines = text.splitlines(keepends=True)
        kept = [line for line in lines if not pattern.search(line)]
        if len(kept) == len(lines):
            return 0
        data = "".join(kept).encode("utf-8", errors="surrogateescape")
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)
        return len(lines) - len(kept)
    finally:
        os.close(fd)  # closing releases the lock


def scrub_csv(path: Path, pattern: re.Pattern[str]) -> int:
    """Rewrite the CSV file `path` without the records that match; the number removed."""
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return 0
    try:
        records = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error:  # a field over the csv module's limit: lines are the next best unit
        return scrub_lines(path, pattern)
    kept = [r for r in records if not any(pattern.search(value) for value in r)]
    if len(kept) == len(records):
        return 0
    out = io.StringIO(newline="")
    csv.writer(out).writerows(kept)
    staged = path.with_name(f".{path.name}.scrub")
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape", newline="") as handle:
        handle.write(out.getvalue())
        handle.flush()
        os.fsync(handle.fileno())
    staged.replace(path)
    return len(records) - len(kept)
