"""The local spool of offer events: append-only files that several processes share safely.

Protocol: each process appends only to its own file, under an exclusive `flock`, and
re-checks after locking that the path still names the file it opened. A replayer claims a
file by renaming it (atomic), then takes the lock, which waits out any append in progress;
an append that loses that race sees the rename and starts a new file. A claimed file whose
lock is free belongs to a replayer that died and is taken over. The volume must support
`flock` between the processes that share it (local disks, NFSv4).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import socket
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from nextoffer.domain.private_files import FILE_MODE, private_dir

log = logging.getLogger(__name__)

SPOOL_PREFIX = "events-"
SPOOL_SUFFIX = ".jsonl"
CLAIM_MARK = ".replaying-"

# No dots: a tag must never contain CLAIM_MARK, which splits a claimed name.
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_-]+")


def _safe(part: str) -> str:
    return _SAFE_NAME.sub("_", part).strip("_-") or "x"


def _same_file(fd: int, path: Path) -> bool:
    """True while `path` still names the file open as `fd` (not renamed away or replaced)."""
    opened = os.fstat(fd)
    try:
        named = path.stat()
    except FileNotFoundError:
        return False
    return (opened.st_dev, opened.st_ino) == (named.st_dev, named.st_ino)


def fsync_dir(path: Path) -> None:
    """Make a created, renamed or removed directory entry durable, not just the file's data."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_all(fd: int) -> bytes:
    """The whole content of the open file `fd`, read from its start."""
    chunks = []
    offset = 0
    while chunk := os.pread(fd, 1 << 20, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def original_name(name: str) -> str:
    """The spool file's name before a replayer claimed it."""
    return name.split(CLAIM_MARK, 1)[0]


class Spool:
    """One process's spool file in `directory`, and the claims replayers make on any file."""

    def __init__(
        self, directory: Path, *, process_tag: str | None = None, prefix: str = SPOOL_PREFIX
    ) -> None:
        """Spool to `directory`, created on first use; the file is named after this process.

        `prefix` starts every file name of this kind of spool (events, exposures).
        """
        self.directory = Path(directory)
        self.prefix = prefix
        owner = f"{_safe(socket.gethostname())}-{os.getpid()}"
        if process_tag is not None:
            owner = f"{owner}-{_safe(process_tag)}"
        self.file = self.directory / f"{prefix}{owner}{SPOOL_SUFFIX}"
        self._owner = owner
        self._lock = threading.Lock()

    # --- write path -------------------------------------------------------------------

    def append(self, lines: Sequence[str]) -> None:
        """Append `lines` durably (fsync) to this process's file, or raise OSError."""
        payload = "".join(f"{line}\n" for line in lines).encode("utf-8")
        with self._lock:
            private_dir(self.directory)  # events name customers: owner only
            while True:
                flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
                fd = os.open(self.file, flags, FILE_MODE)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    if not _same_file(fd, self.file):
                        continue  # claimed by a replayer between open and lock: reopen
                    self._append_locked(fd, payload)
                    return
                finally:
                    os.close(fd)  # also releases the flock

    def _append_locked(self, fd: int, payload: bytes) -> None:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            # An earlier append died mid-line: end that line so ours stay whole.
            payload = b"\n" + payload
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            # Not acknowledged, so leave no half batch behind (best effort: the disk failed).
            try:
                os.ftruncate(fd, size)
            except OSError:
                log.exception("could not trim a failed append to %s", self.file)
            raise
        if size == 0:
            fsync_dir(self.directory)

    # --- replay -----------------------------------------------------------------------

    def files(self) -> list[Path]:
        """Every spool file in `directory`, of any process, claimed by a replayer or not."""
        if not self.directory.is_dir():
            return []
        return sorted(
            path
            for path in self.directory.iterdir()
            if path.name.startswith(self.prefix)
            and (path.name.endswith(SPOOL_SUFFIX) or CLAIM_MARK in path.name)
        )

    def depth(self) -> int:
        """Lines waiting in spool files (non-empty lines), for a gauge."""
        depth = 0
        for path in self.files():
            try:
                with path.open("rb") as handle:
                    depth += sum(1 for line in handle if line.strip())
            except FileNotFoundError:
                continue  # replayed and removed while we counted
        return depth

    @contextmanager
    def claim(self, path: Path) -> Iterator[tuple[Path, int] | None]:
        """Yield (claimed path, locked fd) when this replayer got the file, else None."""
        original = original_name(path.name)
        # A fresh name per claim: a rename never overwrites, even over our own stale claim.
        target = path.with_name(f"{original}{CLAIM_MARK}{self._owner}-{uuid.uuid4().hex[:8]}")
        if CLAIM_MARK in path.name:
            # Someone's claim: taken over only if its lock is free (the claimant died), and
            # renamed while we hold the lock, so no one else can be renaming it.
            fd = self._open_locked(path, blocking=False)
            if fd is None:
                yield None
                return
            try:
                path.rename(target)
            except FileNotFoundError:
                os.close(fd)
                yield None
                return
        else:
            try:
                path.rename(target)
            except FileNotFoundError:
                yield None  # another replayer claimed it first
                return
            # Blocks only while an append that opened the file before the rename finishes.
            fd = self._open_locked(target, blocking=True)
            if fd is None:
                yield None
                return
        try:
            yield target, fd
        finally:
            os.close(fd)

    @staticmethod
    def _open_locked(path: Path, *, blocking: bool) -> int | None:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        if not _same_file(fd, path):
            # Taken over, replayed or given back while we waited for the lock.
            os.close(fd)
            return None
        return fd

    def remove(self, claimed: Path) -> None:
        """Delete a replayed file, durably (called with its lock held)."""
        claimed.unlink()
        fsync_dir(self.directory)

    def give_back(self, claimed: Path) -> None:
        """Put a claimed file back under its original name, or leave it claimed if taken.

        A hard link refuses to overwrite, unlike `os.rename`: the original name may already
        hold a new file its process has started. Called with the file's lock held.
        """
        original = claimed.with_name(original_name(claimed.name))
        try:
            original.hardlink_to(claimed)
        except FileExistsError:
            return  # stays claimed; its lock is free once we close it, so it is taken over
        except OSError:
            log.warning("could not give back %s; left claimed", claimed.name, exc_info=True)
            return
        claimed.unlink()
