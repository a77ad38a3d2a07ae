"""The object store over an S3 bucket and key prefix (AWS, MinIO), and its one client."""

from __future__ import annotations

import builtins
import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nextoffer.domain.errors import ConfigError, NotFoundError
from nextoffer.storage.base import BACKUP_SETTING, ObjectInfo, ObjectStore, check_key
from nextoffer.storage.errors import is_not_found, is_s3_library_error, translate

if TYPE_CHECKING:
    from botocore.config import Config
    from mypy_boto3_s3.client import S3Client

# The one retry and timeout policy of every S3 call nextoffer makes. Five attempts in all
# (botocore's "standard" mode, backoff with jitter: at most ~15 s of waiting) ride out
# throttling and a restarting MinIO; a server that does not accept the connection within
# 5 s, or stops sending for 60 s, counts as down.
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 60
TOTAL_ATTEMPTS = 5
# S3 deletes at most this many keys per request.
_DELETE_BATCH = 1000


def client_config(endpoint_url: str = "") -> Config:
    """The botocore Config of the policy above, path-style addressing for an own endpoint."""
    from botocore.config import Config

    options: dict[str, Any] = {
        "retries": {"total_max_attempts": TOTAL_ATTEMPTS, "mode": "standard"},
        "connect_timeout": CONNECT_TIMEOUT_S,
        "read_timeout": READ_TIMEOUT_S,
    }
    if endpoint_url:
        # MinIO and most self-hosted servers do not resolve bucket.host names.
        options["s3"] = {"addressing_style": "path"}
    return Config(**options)


def s3_client(endpoint_url: str = "", *, label: str = "s3://") -> S3Client:
    """A client for AWS S3, or for MinIO and other S3-compatible stores at `endpoint_url`.

    Without `endpoint_url`, boto3 uses AWS_ENDPOINT_URL or AWS. Credentials and region come
    from boto3's usual chain (AWS_* variables, profiles, instance roles): they are never
    settings of ours, so they never reach our logs. `label` leads the error without boto3.
    """
    try:
        import boto3
    except ImportError:
        raise ConfigError(f"{label}: s3:// needs the boto3 package (pip install boto3)") from None
    # A session of its own: boto3's default session is shared, and not thread-safe to set up.
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint_url or None, config=client_config(endpoint_url)
    )


class S3Store(ObjectStore):
    """A bucket and key prefix on S3 or an S3-compatible server (MinIO)."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        endpoint_url: str = "",
        setting: str | None = BACKUP_SETTING,
        *,
        client: S3Client | None = None,
    ) -> None:
        prefix = prefix.strip("/")
        super().__init__(f"s3://{bucket}/{prefix}".rstrip("/"), setting)
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self.endpoint_url = endpoint_url
        # Built on first use, so that opening a store never needs boto3 or the network.
        self._s3 = client

    @property
    def _client(self) -> S3Client:
        if self._s3 is None:
            self._s3 = s3_client(self.endpoint_url, label=self.setting or self.url)
        return self._s3

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    @contextlib.contextmanager
    def _calling(self, key: str = "") -> Iterator[None]:
        """Exceptions of boto3 as one line naming the setting (storage.errors.translate)."""
        try:
            yield
        except Exception as exc:
            if not is_s3_library_error(exc):
                raise
            raise translate(
                exc,
                url=self.url,
                where=self.describe(key),
                bucket=self.bucket,
                setting=self.setting,
                endpoint_url=self.endpoint_url,
            ) from None

    def ensure(self) -> bool:
        with self._calling():
            try:
                self._client.head_bucket(Bucket=self.bucket)
                return False
            except Exception as exc:
                if not is_not_found(exc):
                    raise
            self._client.create_bucket(Bucket=self.bucket)
        return True

    def list(self, prefix: str = "", *, recursive: bool = True) -> builtins.list[ObjectInfo]:
        found: list[ObjectInfo] = []
        with self._calling(prefix):
            paginator = self._client.get_paginator("list_objects_v2")
            where = self.prefix + prefix
            pages = (
                paginator.paginate(Bucket=self.bucket, Prefix=where)
                if recursive
                # S3's delimiter leaves out keys with a further `/`: a folder's own files.
                else paginator.paginate(Bucket=self.bucket, Prefix=where, Delimiter="/")
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

    def info(self, key: str) -> ObjectInfo | None:
        try:
            with self._calling(key):
                head = self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        except NotFoundError:
            return None
        return ObjectInfo(key, int(head["ContentLength"]), str(head["ETag"]).strip('"'))

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
        for start in range(0, len(names), _DELETE_BATCH):
            batch = names[start : start + _DELETE_BATCH]
            with self._calling():
                self._client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )
        return len(names)
