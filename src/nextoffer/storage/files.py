"""The object store over a folder on a local or mounted filesystem (`file://`)."""

from __future__ import annotations

import builtins
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from nextoffer.domain.errors import BackendUnavailableError, InputError, NotFoundError
from nextoffer.domain.private_files import private_dir
from nextoffer.storage.base import (
    BACKUP_SETTING,
    ObjectInfo,
    ObjectStore,
    check_key,
    direct_child,
)


class FileStore(ObjectStore):
    """A folder on a local or mounted filesystem."""

    def __init__(self, root: Path, setting: str | None = BACKUP_SETTING) -> None:
        super().__init__(root.as_uri(), setting)
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _failed(self, key: str, exc: OSError) -> Exception:
        detail = exc.strerror or str(exc)
        if self.setting is None:
            return InputError(f"{self.describe(key)}: {detail}")
        return BackendUnavailableError(self.setting, self.describe(key), detail)

    def list(self, prefix: str = "", *, recursive: bool = True) -> builtins.list[ObjectInfo]:
        # Walk only the folder the prefix is in: listing one backup must not read them all.
        folder = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not folder.is_dir():
            return []
        found: list[ObjectInfo] = []
        for dirpath, dirs, files in os.walk(folder):
            if not recursive:
                dirs.clear()  # the prefix's own folder holds every direct child
            for name in files:
                if name.startswith(".") and ".tmp-" in name:
                    continue  # an upload in progress
                key = (Path(dirpath) / name).relative_to(self.root).as_posix()
                if not key.startswith(prefix) or not (recursive or direct_child(key, prefix)):
                    continue
                info = self._stat(key)
                if info is not None:
                    found.append(info)
        return sorted(found, key=lambda o: o.key)

    def _stat(self, key: str) -> ObjectInfo | None:
        try:
            stat = (self.root / key).stat()
        except FileNotFoundError:
            return None  # deleted while we walked
        return ObjectInfo(key, stat.st_size, f"{stat.st_size:x}-{stat.st_mtime_ns:x}")

    def info(self, key: str) -> ObjectInfo | None:
        return self._stat(key) if self._path(key).is_file() else None

    def upload(self, path: Path, key: str) -> None:
        target = self._path(key)
        try:
            self._private_folders(target.parent)
            handle, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
            tmp = Path(tmp_name)
            try:
                with os.fdopen(handle, "wb") as out, path.open("rb") as source:
                    shutil.copyfileobj(source, out, 1024 * 1024)
                    out.flush()
                    # A backup that is not on disk when we say "done" is not a backup.
                    os.fsync(out.fileno())
                # Dumps hold customer data: readable by the owner (the service user) only.
                tmp.chmod(0o600)
                tmp.replace(target)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise self._failed(key, exc) from None

    def download(self, key: str, path: Path) -> None:
        source = self._path(key)
        if not source.is_file():
            raise NotFoundError(f"{self.describe(key)}: not found")
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            shutil.copyfile(source, tmp)
            tmp.replace(path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise self._failed(key, exc) from None

    def delete(self, keys: Iterable[str]) -> int:
        count = 0
        for key in keys:
            path = self._path(key)
            path.unlink(missing_ok=True)
            count += 1
            # Empty folders left behind would look like incomplete backups.
            parent = path.parent
            while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
        return count

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def ensure(self) -> bool:
        if self.root.is_dir():
            return False
        private_dir(self.root)
        return True

    def _private_folders(self, folder: Path) -> None:
        # Backups hold customer data: every folder from the root down is the owner's only.
        missing = []
        while not folder.is_dir() and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
        for path in reversed(missing):
            private_dir(path)
