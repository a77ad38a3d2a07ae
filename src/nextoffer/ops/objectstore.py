"""One small interface over `file://` and `s3://` prefixes: list, upload, download, delete."""

from __future__ import annotations

import builtins
import contextlib
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from nextoffer.domain.errors import BackendUnavailableError, ConfigError, NotFoundError

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

BACKUP_SETTING = "NEXTOFFER_BACKUP_URL"
# S3 deletes at most this many keys per request.
_S3_DELETE_BATCH = 1000
# botocore's connection failures, by name: the store is down, not misconfigured.
_UNREACHABLE = {
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ConnectionClosedError",
}
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "Forbidden"}


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
    """Objects under one URL prefix, addressed by `/`-separated keys relative to it."""

    def __init__(self, url: str, setting: str) -> None:
        self.url = url
        self.setting = setting

    @abstractmethod
    def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        """Every object whose key starts with `prefix`, sorted by key."""

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
    def exists(self, key: str) -> bool:
        """True when `key` is stored."""

    @abstractmethod
    def ensure(self) -> bool:
        """Create the folder or bucket when missing (bootstrap); True when it was created."""

    def put_bytes(self, data: bytes, key: str) -> None:
        """Store `data` as `key` (small objects: manifests)."""
        with _scratch_file() as path:
            path.write_bytes(data)
            self.upload(path, key)

    def get_bytes(self, key: str) -> bytes:
        """The content of `key` (small objects: manifests)."""
        with _scratch_file() as path:
            self.download(key, path)
            return path.read_bytes()

    def describe(self, key: str = "") -> str:
        """`url/key`, for messages."""
        return f"{self.url.rstrip('/')}/{key}" if key else self.url


def open_prefix(url: str, *, endpoint_url: str = "", setting: str = BACKUP_SETTING) -> ObjectStore:
    """The store for `url`: `file://path`, a plain path, or `s3://bucket/prefix`.

    Relative file paths are taken from the working directory. S3 goes through boto3, to
    `endpoint_url` (MinIO) when given, else to AWS_ENDPOINT_URL or AWS; credentials come
    from the usual AWS_* variables. `setting` names the variable the URL came from, for
    error messages.
    """
    if not url:
        raise ConfigError(f"{setting} is empty")
    scheme = urlsplit(url).scheme
    if scheme in {"", "file"}:
        return FileStore(file_url_path(url), setting)
    if scheme == "s3":
        parts = urlsplit(url)
        if not parts.netloc:
            raise ConfigError(f"{setting}: {url!r} names no bucket (s3://bucket/prefix)")
        return S3Store(parts.netloc, parts.path.strip("/"), endpoint_url, setting)
    raise ConfigError(f"{setting}: unsupported URL scheme {scheme!r}; use file:// or s3://")


def file_url_path(url: str) -> Path:
    """The folder of a `file://` URL or a plain path.

    `file://./x` and `file://x` are relative to the working directory, `file:///x` is
    absolute (the convention of NEXTOFFER_ARTIFACTS_URL).
    """
    path = url.removeprefix("file:")
    if path.startswith("//"):
        path = path[2:]
    path = path.removeprefix("localhost/") if path.startswith("localhost/") else path
    return Path(path or ".").resolve()


def _check_key(key: str) -> str:
    parts = PurePosixPath(key).parts
    if not key or key.startswith("/") or any(p in {"..", "."} for p in parts):
        raise ValueError(f"invalid object key {key!r}")
    return key


@contextlib.contextmanager
def _scratch_file() -> Iterator[Path]:
    handle, name = tempfile.mkstemp(prefix="nextoffer-object-")
    os.close(handle)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


class FileStore(ObjectStore):
    """A folder on a local or mounted filesystem."""

    def __init__(self, root: Path, setting: str = BACKUP_SETTING) -> None:
        super().__init__(root.as_uri(), setting)
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        # Walk only the folder the prefix is in: listing one backup must not read them all.
        folder = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not folder.is_dir():
            return []
        found: list[ObjectInfo] = []
        for dirpath, _dirs, files in os.walk(folder):
            for name in files:
                if name.startswith(".") and ".tmp-" in name:
                    continue  # an upload in progress
                path = Path(dirpath) / name
                key = path.relative_to(self.root).as_posix()
                if not key.startswith(prefix):
                    continue
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue  # deleted while we walked
                found.append(
                    ObjectInfo(key, stat.st_size, f"{stat.st_size:x}-{stat.st_mtime_ns:x}")
                )
        return sorted(found, key=lambda o: o.key)

    def upload(self, path: Path, key: str) -> None:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
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
            raise BackendUnavailableError(
                self.setting, self.describe(key), exc.strerror or str(exc)
            ) from None

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
            raise BackendUnavailableError(
                self.setting, self.describe(key), exc.strerror or str(exc)
            ) from None

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
        self.root.mkdir(parents=True, exist_ok=True)
        return True


class S3Store(ObjectStore):
    """A bucket and key prefix on S3 or an S3-compatible server (MinIO)."""

    def __init__(
        self, bucket: str, prefix: str, endpoint_url: str = "", setting: str = BACKUP_SETTING
    ) -> None:
        super().__init__(f"s3://{bucket}/{prefix}".rstrip("/"), setting)
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self.endpoint_url = endpoint_url
        self._s3: S3Client | None = None

    @property
    def _client(self) -> S3Client:
        if self._s3 is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError:
                raise ConfigError(f"{self.setting}: s3:// needs the boto3 package") from None
            options: dict[str, Any] = {
                "retries": {"max_attempts": 5, "mode": "standard"},
                "connect_timeout": 5,
                "read_timeout": 60,
            }
            if self.endpoint_url:
                # MinIO and most self-hosted servers do not resolve bucket.host names.
                options["s3"] = {"addressing_style": "path"}
            self._s3 = boto3.session.Session().client(
                "s3", endpoint_url=self.endpoint_url or None, config=Config(**options)
            )
        return self._s3

    def _key(self, key: str) -> str:
        return self.prefix + _check_key(key)

    @contextlib.contextmanager
    def _calling(self, key: str = "") -> Iterator[None]:
        """Turn botocore's exceptions as one line naming the setting; never credentials."""
        try:
            yield
        except Exception as exc:
            module = type(exc).__module__.split(".")[0]
            if module not in {"botocore", "boto3", "s3transfer"}:
                raise
            raise self._translate(exc, key) from None

    def _translate(self, exc: Exception, key: str) -> Exception:
        name = type(exc).__name__
        where = self.describe(key)
        if name in {"NoCredentialsError", "PartialCredentialsError"}:
            return ConfigError(
                f"{self.setting}: no S3 credentials for {self.url}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or an AWS profile or role)"
            )
        if name in _UNREACHABLE:
            target = self.endpoint_url or "S3"
            return BackendUnavailableError(self.setting, f"{self.url} at {target}", name)
        response = getattr(exc, "response", None) or {}
        error = response.get("Error", {}) if isinstance(response, dict) else {}
        code = str(error.get("Code", ""))
        if code in {"NoSuchKey", "404", "NotFound"}:
            return NotFoundError(f"{where}: not found")
        if code == "NoSuchBucket":
            return ConfigError(f"{self.setting}: bucket {self.bucket!r} does not exist")
        if code in _DENIED:
            return ConfigError(
                f"{self.setting}: access to {where} denied ({code}); check the AWS_* credentials"
            )
        message = str(error.get("Message", "")) or str(exc).splitlines()[0]
        return BackendUnavailableError(self.setting, where, f"{code or name}: {message}"[:300])

    def ensure(self) -> bool:
        with self._calling():
            try:
                self._client.head_bucket(Bucket=self.bucket)
                return False
            except Exception as exc:
                code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
                if code not in {"404", "NoSuchBucket", "NotFound"}:
                    raise
            self._client.create_bucket(Bucket=self.bucket)
        return True

    def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        found: list[ObjectInfo] = []
        with self._calling(prefix):
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    found.append(
                        ObjectInfo(
                            item["Key"][len(self.prefix) :],
                            int(item.get("Size", 0)),
                            str(item.get("ETag", "")).strip('"'),
                        )
                    )
        return sorted(found, key=lambda o: o.key)

    def upload(self, path: Path, key: str) -> None:
        with self._calling(key):
            # upload_file switches to multipart for big files; a PUT is atomic for readers.
            self._client.upload_file(str(path), self.bucket, self._key(key))

    def download(self, key: str, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with self._calling(key):
                self._client.download_file(self.bucket, self._key(key), str(tmp))
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)

    def delete(self, keys: Iterable[str]) -> int:
        names = [self._key(k) for k in keys]
        for start in range(0, len(names), _S3_DELETE_BATCH):
            batch = names[start : start + _S3_DELETE_BATCH]
            with self._calling():
                self._client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )
        return len(names)

    def exists(self, key: str) -> bool:
        try:
            with self._calling(key):
                self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        except NotFoundError:
            return False
        return True
