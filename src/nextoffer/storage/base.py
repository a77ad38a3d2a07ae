"""The object-store interface: objects under one URL prefix, addressed by relative keys."""

from __future__ import annotations

import builtins
import contextlib
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

# The default `setting` of a store: backups were its first user (ops.backup.backup_store);
# every other caller names the variable its URL came from.
BACKUP_SETTING = "NEXTOFFER_BACKUP_URL"


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object: its key relative to the store's prefix, size, and change token.

    `etag` is S3's ETag, or `<size>-<mtime_ns>` in hex for files: it tells that an object
    changed, it is not a checksum of the content.
    """

    key: str
    size: int
    etag: str


class ObjectStore(ABC):
    """Objects under one URL prefix, addressed by `/`-separated keys relative to it.

    `setting` names the variable the URL came from, so that errors say what to fix; None
    when the URL was typed by the user (a command-line argument): errors then name the URL
    and a store that cannot be used is an `InputError` rather than a `ConfigError`.
    """

    def __init__(self, url: str, setting: str | None) -> None:
        self.url = url
        self.setting = setting

    @abstractmethod
    def list(self, prefix: str = "", *, recursive: bool = True) -> builtins.list[ObjectInfo]:
        """Every object whose key starts with `prefix`, sorted by key.

        With `recursive=False` only keys with no `/` after `prefix` (a folder's own files).
        """

    @abstractmethod
    def info(self, key: str) -> ObjectInfo | None:
        """Size and change token of `key`; None when it is not stored."""

    @abstractmethod
    def upload(self, path: Path, key: str) -> None:
        """Store the file `path` as `key`, replacing it; readers never see half a file."""

    @abstractmethod
    def download(self, key: str, path: Path) -> None:
        """Copy `key` to the file `path` (NotFoundError when absent); `path` appears whole."""

    @abstractmethod
    def delete(self, keys: Iterable[str]) -> int:
        """Delete `keys` (absent ones are ignored); returns how many were asked for."""

    @abstractmethod
    def ensure(self) -> bool:
        """Create the folder or bucket when missing (bootstrap); True when it was created."""

    def exists(self, key: str) -> bool:
        """True when `key` is stored."""
        return self.info(key) is not None

    def download_into(self, key: str, folder: Path) -> Path:
        """Download `key` into `folder` under its own name (the key's last part)."""
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / PurePosixPath(check_key(key)).name
        self.download(key, target)
        return target

    def put_bytes(self, data: bytes, key: str) -> None:
        """Store `data` as `key` (small objects: manifests)."""
        with scratch_file() as path:
            path.write_bytes(data)
            self.upload(path, key)

    def get_bytes(self, key: str) -> bytes:
        """The content of `key` (small objects: manifests)."""
        with scratch_file() as path:
            self.download(key, path)
            return path.read_bytes()

    def describe(self, key: str = "") -> str:
        """`url/key`, for messages."""
        return f"{self.url.rstrip('/')}/{key}" if key else self.url


def check_key(key: str) -> str:
    """`key` when it is a relative `/`-separated key; ValueError for one that could escape."""
    parts = PurePosixPath(key).parts
    if not key or key.startswith("/") or any(p in {"..", "."} for p in parts):
        raise ValueError(f"invalid object key {key!r}")
    return key


def direct_child(key: str, prefix: str) -> bool:
    """True when `key` lies directly under `prefix` (no further `/`), as S3's delimiter."""
    return "/" not in key[len(prefix) :]


@contextlib.contextmanager
def scratch_file() -> Iterator[Path]:
    """A temporary file path, removed afterwards."""
    handle, name = tempfile.mkstemp(prefix="nextoffer-object-")
    os.close(handle)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)
