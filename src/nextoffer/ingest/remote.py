"""Import files in S3 or MinIO: list the objects under an s3:// prefix and download them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from nextoffer.domain.errors import InputError
from nextoffer.ingest.sources import entity_for
from nextoffer.storage import S3Store

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

SCHEME = "s3://"


@dataclass(frozen=True)
class RemoteObject:
    """One import file in a bucket, with what the listing says about its content."""

    bucket: str
    key: str
    size: int
    etag: str

    @property
    def uri(self) -> str:
        """The object's s3:// URI, as the ledger and the quarantine record it."""
        return f"{SCHEME}{self.bucket}/{self.key}"

    @property
    def name(self) -> str:
        """The file name (the key's last part), which says which entity it holds."""
        return PurePosixPath(self.key).name


def is_remote(source: str) -> bool:
    """True for an s3:// source, False for a local folder or file."""
    return source.startswith(SCHEME)


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, key or prefix) of `s3://bucket/some/prefix`."""
    if not is_remote(url):
        raise InputError(f"{url}: not an s3:// URL")
    bucket, _, key = url[len(SCHEME) :].partition("/")
    if not bucket:
        raise InputError(f"{url}: no bucket (expected s3://bucket/prefix)")
    return bucket, key


def _store(client: S3Client, bucket: str, prefix: str, endpoint_url: str) -> S3Store:
    # The source is typed on the command line (or NEXTOFFER_INGEST_SOURCE, passed the same
    # way): with no setting, storage's errors name the URL and are InputErrors.
    return S3Store(bucket, prefix, endpoint_url, setting=None, client=client)


def _named_like_import(name: str) -> bool:
    return entity_for(Path(name)) is not None


def list_import_objects(
    client: S3Client,
    url: str,
    endpoint_url: str = "",
    accept: Callable[[str], bool] = _named_like_import,
) -> list[RemoteObject]:
    """The import files directly under `url` (like a folder; sub-prefixes are not entered).

    `url` may also name one object. Objects whose names are not import files (`accept`:
    by default, named after an entity) are ignored, as in a local folder. An empty or
    absent prefix gives an empty list. `client` comes from `nextoffer.storage.s3_client`,
    so that one client serves the listing and downloads.
    """
    bucket, key = parse_s3_url(url)
    if key and not key.endswith("/") and accept(PurePosixPath(key).name):
        parent, _, name = key.rpartition("/")
        single = _store(client, bucket, parent, endpoint_url).info(name)
        if single is not None:
            return [RemoteObject(bucket, key, single.size, single.etag)]
    store = _store(client, bucket, key, endpoint_url)
    found = [
        RemoteObject(bucket, store.prefix + info.key, info.size, info.etag)
        for info in store.list(recursive=False)
    ]
    return [obj for obj in found if accept(obj.name)]


def download(client: S3Client, obj: RemoteObject, folder: Path, endpoint_url: str = "") -> Path:
    """Download `obj` into `folder` under its own name; the file appears only when complete."""
    return _store(client, obj.bucket, "", endpoint_url).download_into(obj.key, folder)
