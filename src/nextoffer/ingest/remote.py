"""Import files in S3 or MinIO: list the objects under an s3:// prefix and download them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from nextoffer.domain.errors import BackendUnavailableError, ConfigError, InputError
from nextoffer.ingest.sources import entity_for

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


def s3_client(endpoint_url: str) -> S3Client:
    """A client for AWS S3, or for MinIO and other S3-compatible stores at `endpoint_url`.

    Credentials and region come from boto3's usual chain (AWS_* variables, profiles,
    instance roles): they are never settings of ours, so they never reach our logs.
    """
    import boto3
    from botocore.config import Config

    # MinIO serves buckets as paths; virtual hosts would need DNS entries per bucket.
    config = Config(
        s3={"addressing_style": "path"} if endpoint_url else {},
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
    )
    return boto3.client("s3", endpoint_url=endpoint_url or None, config=config)


def list_import_objects(client: S3Client, url: str, endpoint_url: str = "") -> list[RemoteObject]:
    """The import files directly under `url` (like a folder; sub-prefixes are not entered).

    `url` may also name one object. Objects whose names are not import files are ignored,
    as in a local folder. An empty or absent prefix gives an empty list.
    """
    bucket, key = parse_s3_url(url)
    with _translated(url, endpoint_url):
        if key and not key.endswith("/") and entity_for(Path(key)) is not None:
            single = _head(client, bucket, key)
            if single is not None:
                return [single]
        prefix = key if not key or key.endswith("/") else f"{key}/"
        found: list[RemoteObject] = []
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, Delimiter="/"
        )
        for page in pages:
            for item in page.get("Contents", []):
                obj = RemoteObject(
                    bucket, item["Key"], int(item.get("Size", 0)), item.get("ETag", "").strip('"')
                )
                if entity_for(Path(obj.name)) is not None:
                    found.append(obj)
    return sorted(found, key=lambda o: o.key)


def download(client: S3Client, obj: RemoteObject, folder: Path, endpoint_url: str = "") -> Path:
    """Download `obj` into `folder` under its own name; the file appears only when complete."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / obj.name
    partial = folder / f".{obj.name}.part"
    with _translated(obj.uri, endpoint_url):
        client.download_file(obj.bucket, obj.key, str(partial))
    partial.replace(target)
    return target


def _head(client: S3Client, bucket: str, key: str) -> RemoteObject | None:
    from botocore.exceptions import ClientError

    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if _code(exc) in {"404", "NoSuchKey", "NotFound"}:
            return None
        raise
    return RemoteObject(bucket, key, int(head["ContentLength"]), head["ETag"].strip('"'))


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextmanager
def _translated(url: str, endpoint_url: str) -> Iterator[None]:
    """Turn boto errors into one line naming what to fix (no stack trace, no secrets)."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    endpoint = endpoint_url or "AWS S3"
    try:
        yield
    except (NoCredentialsError, PartialCredentialsError):
        raise ConfigError(
            f"{url}: no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or an AWS profile)"
        ) from None
    except EndpointConnectionError:
        raise BackendUnavailableError(
            "NEXTOFFER_S3_ENDPOINT_URL", endpoint, "connection failed"
        ) from None
    except ClientError as exc:
        code = _code(exc)
        raise InputError(f"{url}: {_CLIENT_ERRORS.get(code, code or 'request failed')}") from None
    except BotoCoreError as exc:
        detail = " ".join(str(exc).split())
        raise BackendUnavailableError("NEXTOFFER_S3_ENDPOINT_URL", endpoint, detail) from None


_CLIENT_ERRORS = {
    "NoSuchBucket": "no such bucket",
    "AccessDenied": "access denied",
    "InvalidAccessKeyId": "the access key is not known to the store",
    "SignatureDoesNotMatch": "the secret key does not match the access key",
    "404": "not found",
    "403": "access denied",
}
