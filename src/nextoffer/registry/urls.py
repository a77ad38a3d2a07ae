"""The registry's two URLs made absolute and checked, and passwords masked in anything shown.

This is the registry's only URL handling; the artifact files themselves are read and written
by MLflow's own artifact repositories. Object-store URLs are made absolute the one way
`nextoffer.storage` does it for every other store.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from nextoffer.domain.errors import ConfigError
from nextoffer.domain.private_files import private_dir, private_file
from nextoffer.storage import absolute_url

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


def private_sqlite_file(uri: str) -> None:
    """Create a `sqlite:///` registry's file 0600 (folder 0700 when made here) if missing.

    The registry records who trained what and the runs' parameters; like the app's own
    SQLite file it is the owner's only. Other URIs are left alone.
    """
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return
    path = uri[len(prefix) :].partition("?")[0]
    if not path or path == ":memory:":
        return
    file = Path(path)
    if not file.parent.exists():
        private_dir(file.parent)
    if not file.exists():
        private_file(file)


def absolute_artifacts_url(url: str) -> str:
    """`file://./var/artifacts` (relative) as an absolute file URI; other schemes unchanged."""
    return absolute_url(url, ARTIFACTS_SETTING)


def artifacts_are_separate(artifacts_url: str) -> bool:
    """True when the files live in a store of their own (S3 …), not beside the tracking server.

    Files on the local disk or proxied by the tracking server fail with the server.
    """
    return urlsplit(artifacts_url).scheme not in {"file", "mlflow-artifacts"}


def redact(text: str) -> str:
    """Mask passwords in any URL inside `text` (user:secret@host → user:***@host)."""
    return _PASSWORD_IN_URL.sub(r"\1:***@", text)
