"""SQLite database files: consistent online copies, gzip, emptiness, replacing a file whole."""

from __future__ import annotations

import gzip
import shutil
import sqlite3
from pathlib import Path

from nextoffer.domain.errors import ConfigError
from nextoffer.domain.private_files import open_private, private_file
from nextoffer.store.engine import parse_database_url

# gzip level 3: most of level 6's ratio on table pages at about twice the speed.
GZIP_LEVEL = 3
_SIDE_FILES = ("-wal", "-shm", "-journal")


def sqlite_path(url: str, setting: str) -> Path:
    """The file of a `sqlite:///path` URL (relative paths from the working directory)."""
    parsed = parse_database_url(url, setting)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        raise ConfigError(f"{setting}: not a SQLite file URL")
    if parsed.database == ":memory:":
        raise ConfigError(f"{setting}: an in-memory SQLite database cannot be backed up")
    return Path(parsed.database).resolve()


def online_copy(source: Path, target: Path) -> None:
    """Copy a live SQLite database with SQLite's backup API.

    The copy is one consistent snapshot, taken while writers go on, and includes committed
    data still in the WAL file.
    """
    src = sqlite3.connect(source, timeout=30)
    try:
        private_file(target)  # a copy of personal data: owner only, before SQLite writes it
        dst = sqlite3.connect(target)
        try:
            src.backup(dst, pages=4096)
            # A self-contained file: no -wal beside it, whatever mode the source was in.
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    finally:
        src.close()


def gzip_file(source: Path, target: Path) -> None:
    """Compress `source` into `target` (no name or time in the header: same input, same bytes)."""
    with (
        source.open("rb") as raw,
        open_private(target, "wb") as out,
        gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=GZIP_LEVEL, mtime=0) as gz,
    ):
        shutil.copyfileobj(raw, gz, 1024 * 1024)


def gunzip_file(source: Path, target: Path) -> None:
    """Decompress `source` into `target`."""
    with gzip.open(source, "rb") as packed, open_private(target, "wb") as out:
        shutil.copyfileobj(packed, out, 1024 * 1024)


def table_count(path: Path) -> int:
    """Tables in the SQLite file `path`; 0 when it does not exist or is empty."""
    if not path.exists() or path.stat().st_size == 0:
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        row = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        ).fetchone()
        return int(row[0]) if row else 0
    finally:
        conn.close()


def integrity_problem(path: Path) -> str | None:
    """SQLite's quick check of a file: None when it is sound, else the first complaint."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = conn.execute("PRAGMA quick_check").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    result = str(row[0]) if row else "no answer"
    return None if result == "ok" else result


def replace_database(staged: Path, target: Path) -> None:
    """Put the content of `staged` in place of `target`'s, atomically for its readers.

    An existing target is overwritten through SQLite's backup API, in one step: its own
    locking and journal make the switch atomic, and connections that other processes hold
    open see the new content (a file renamed over it would leave them reading the old
    inode). A missing or empty target is simply replaced by renaming; its stale WAL and
    journal files go first, or SQLite would replay pages of another database into it.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and target.stat().st_size > 0:
        src = sqlite3.connect(f"file:{staged}?mode=ro", uri=True)
        try:
            dst = sqlite3.connect(target, timeout=60)
            try:
                src.backup(dst)
            finally:
                dst.close()
        finally:
            src.close()
        staged.unlink()
        return
    for suffix in _SIDE_FILES:
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    staged.replace(target)
