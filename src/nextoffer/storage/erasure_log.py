"""The erasure ledger outside the database: a local append-only file and one object per digest.

A restore replaces the database, its `erasure_ledger` table included, with an older one;
these copies are what `backup restore` reads to erase the same customers again. The file
(VAR_DIR/privacy/erasures.log, 0600 in a 0700 folder) is written first; the objects under
`privacy/erased/` in the backup store survive the loss of the machine, and no backup
prune touches them. Each line and each object holds a digest and a time, never an id.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from nextoffer.storage.base import ObjectStore

FOLDER = "privacy"
FILE_NAME = "erasures.log"
OBJECT_PREFIX = "privacy/erased/"
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def log_path(var_dir: Path) -> Path:
    """Where the local copy is kept."""
    return Path(var_dir) / FOLDER / FILE_NAME


def append_local(var_dir: Path, digests: Iterable[str], at: datetime) -> None:
    """Append `digests` to the local file and flush them to disk before returning."""
    path = log_path(var_dir)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    lines = "".join(f"{d}\t{at.isoformat()}\n" for d in sorted(set(digests)) if _DIGEST.match(d))
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, lines.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


def read_local(var_dir: Path) -> set[str]:
    """Every digest of the local file (none when there is no file yet)."""
    path = log_path(var_dir)
    if not path.exists():
        return set()
    found = set()
    for line in path.read_text(encoding="ascii", errors="replace").splitlines():
        digest = line.split("\t", 1)[0]
        if _DIGEST.match(digest):  # a line cut short by a crash is skipped, not fatal
            found.add(digest)
    return found


def publish(store: ObjectStore, digests: Iterable[str], at: datetime) -> None:
    """One object per digest in `store` (idempotent: the same digest, the same key)."""
    for digest in sorted(set(digests)):
        if _DIGEST.match(digest):
            store.put_bytes(at.isoformat().encode("ascii"), f"{OBJECT_PREFIX}{digest}")


def read_published(store: ObjectStore) -> set[str]:
    """Every digest published to `store`."""
    names = (info.key.rsplit("/", 1)[-1] for info in store.list(OBJECT_PREFIX))
    return {name for name in names if _DIGEST.match(name)}


def existing_key(configured: str, var_dir: Path) -> str | None:
    """The privacy key if one exists (the setting, else VAR_DIR/secrets/privacy_key).

    Read only, for code below `serving` (the ETL): `serving.tokens.resolve_privacy_key`
    is what creates the key; a ledger with digests means it was created already.
    """
    if configured:
        return configured
    try:
        return (Path(var_dir) / "secrets" / "privacy_key").read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
