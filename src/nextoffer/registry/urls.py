"""The registry's two URLs made absolute and checked, and passwords masked in anything shown.

This is the registry's only URL handling; the artifact files themselves are read and written
by MLflow's own artifact repositories. `absolute_artifacts_url` does what
`nextoffer.storage.absolute_url(url, ARTIFACTS_SETTING)` does for the other object-store URLs.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from urllib.parse import urlsplit

from nextoffer.domain.errors import ConfigError

REGISTRY_SETTING = "NEXTOFFER_REGISTRY_URI"
ARTIFACTS_SETTING = "NEXTOFFER_ARTIFACTS_URL"

_PASSWORD_IN_URL = re.compile(r"(?<=://)([^/\s:@]*):[^/\s@]*@")


def absolute_tracking_uri(uri: str) -> str:
    """A SQLite path made absolute: MLflow opens it relative to whatever the cwd is later."""
    if not uri:
        raise ConfigError(f"{REGISTRY_SETTING} is empty")
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        path, sep, query = uri[len(prefix) :].partition("?")
        if path and path != ":memory:" and not path.startswith("/"):
            return f"{prefix}{Path(path).resolve()}{sep}{query}"
    return uri


def absolute_artifacts_url(url: str) -> str:
    """`file://./var/artifacts` (relative) as an absolute file URI; other schemes unchanged.

    Everything after `file://` is taken as a path, so `file://./x` and `file://x` are both
    relative to the working directory and `file:///x` is absolute. `s3://` needs boto3.
    """
    if not url:
        raise ConfigError(f"{ARTIFACTS_SETTING} is empty")
    scheme = urlsplit(url).scheme
    if scheme in {"", "file"}:
        path = url.removeprefix("file:")
        if path.startswith("//"):
            path = path[2:]
        path = path.removeprefix("localhost/") if path.startswith("localhost/") else path
        return Path(path or ".").resolve().as_uri()
    if scheme == "s3" and importlib.util.find_spec("boto3") is None:
        raise ConfigError(f"{ARTIFACTS_SETTING}: s3:// needs the boto3 package (pip install boto3)")
    return url


def artifacts_are_separate(artifacts_url: str) -> bool:
    """True when the files live in a store of their own (S3 …), not beside the tracking server.

    Files on the local disk or proxied by the tracking server fail with the server.
    """
    return urlsplit(artifacts_url).scheme not in {"file", "mlflow-artifacts"}


def redact(text: str) -> str:
    """Mask passwords in any URL inside `text` (user:secret@host → user:***@host)."""
    return _PASSWORD_IN_URL.sub(r"\1:***@", text)
