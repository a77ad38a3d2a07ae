"""Files holding personal data or secrets: created 0600 (owner only) in 0700 folders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """`path` as a folder only its owner may enter (created if missing, tightened if not).

    Folders above it are created as the umask says: only the folder itself is ours.
    """
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    # mkdir's mode is masked by the umask and ignored for an existing folder: set it.
    if (path.stat().st_mode & 0o777) != DIR_MODE:
        path.chmod(DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """`path` as a file only its owner may read (an empty one created if missing)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return path


def _opener(path: str, flags: int) -> int:
    fd = os.open(path, flags, FILE_MODE)
    # A file that existed keeps its mode through os.open: make it private as well.
    os.fchmod(fd, FILE_MODE)
    return fd


def open_private(path: Path, mode: str = "w", **options: Any) -> IO[Any]:
    """`open(path, mode, **options)`, the file created (or kept) 0600."""
    return open(path, mode, opener=_opener, **options)
