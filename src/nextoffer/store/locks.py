"""Named locks held for the length of a job: PostgreSQL advisory locks, file locks for SQLite."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, func, select


def _lock_key(name: str) -> int:
    """A stable signed 64-bit key for `name` (advisory locks are keyed by bigint)."""
    digest = hashlib.sha256(f"nextoffer:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def try_lock(engine: Engine, name: str, lock_dir: Path) -> Iterator[bool]:
    """Try to take the lock `name` without waiting; yields whether it was taken.

    The lock dies with its holder: a session advisory lock ends with the connection, a
    `flock` with the process, so a killed worker never leaves a job locked. PostgreSQL
    locks hold across every host using the database; SQLite's file locks (under
    `lock_dir`) only between processes of one host, which is where a SQLite file lives.
    """
    if engine.dialect.name == "postgresql":
        # Autocommit: the lock is held by the session, and a transaction left open for the
        # whole job would hold back vacuum.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            key = _lock_key(name)
            held = bool(conn.execute(select(func.pg_try_advisory_lock(key))).scalar())
            try:
                yield held
            finally:
                if held:
                    conn.execute(select(func.pg_advisory_unlock(key)))
        return
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_dir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.lock"
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
