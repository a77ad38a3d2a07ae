"""Which store a URL names: `file://` folders and plain paths, `s3://bucket/prefix`."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from urllib.parse import urlsplit

from nextoffer.domain.errors import ConfigError
from nextoffer.storage.base import BACKUP_SETTING, ObjectStore
from nextoffer.storage.files import FileStore
from nextoffer.storage.s3 import S3Store


def open_prefix(
    url: str, *, endpoint_url: str = "", setting: str | None = BACKUP_SETTING
) -> ObjectStore:
    """The store for `url`: `file://path`, a plain path, or `s3://bucket/prefix`.

    Relative file paths are taken from the working directory. S3 goes through boto3, to
    `endpoint_url` (MinIO) when given, else to AWS_ENDPOINT_URL or AWS; credentials come
    from the usual AWS_* variables. `setting` names the variable the URL came from, for
    error messages; None for a URL the user typed (see ObjectStore).
    """
    label = setting or "the URL"
    if not url:
        raise ConfigError(f"{label} is empty")
    parts = urlsplit(url)
    if parts.scheme in {"", "file"}:
        return FileStore(file_url_path(url), setting)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ConfigError(f"{label}: {url!r} names no bucket (s3://bucket/prefix)")
        return S3Store(parts.netloc, parts.path, endpoint_url, setting)
    raise ConfigError(f"{label}: unsupported URL scheme {parts.scheme!r}; use file:// or s3://")


def file_url_path(url: str) -> Path:
    """The folder of a `file://` URL or a plain path, made absolute.

    `file://./x` and `file://x` are relative to the working directory, `file:///x` is
    absolute (the convention of NEXTOFFER_ARTIFACTS_URL).
    """
    path = url.removeprefix("file:")
    if path.startswith("//"):
        path = path[2:]
    path = path.removeprefix("localhost/") if path.startswith("localhost/") else path
    return Path(path or ".").resolve()


def absolute_url(url: str, setting: str) -> str:
    """`url` as every process reads it the same: a file URL or path as an absolute file URI.

    Other schemes are returned unchanged (MLflow also knows `mlflow-artifacts://` ...); an
    `s3://` URL without boto3 installed, or an empty one, is a ConfigError naming `setting`.
    """
    if not url:
        raise ConfigError(f"{setting} is empty")
    scheme = urlsplit(url).scheme
    if scheme in {"", "file"}:
        return file_url_path(url).as_uri()
    if scheme == "s3" and importlib.util.find_spec("boto3") is None:
        raise ConfigError(f"{setting}: s3:// needs the boto3 package (pip install boto3)")
    return url
