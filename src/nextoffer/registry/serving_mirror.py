"""The registry's serving copy: champions' model files under `serving/` and their table row.

MLflow stays the registry of record. Whenever a version is registered its model files are
also copied to `<NEXTOFFER_ARTIFACTS_URL>/serving/<kind>/v<version>/` (plain objects, read
through `nextoffer.storage`), and whenever the champion alias moves the database's
`serving_champions` row for the kind is rewritten. A serving process reads that row and those
files, so it never imports MLflow (see serving.state).

Each copy is `files/<relative path>` objects plus `manifest.json` (the file list), written
last: a copy without its manifest is incomplete and is never read.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TypeVar
from urllib.parse import urlsplit

from nextoffer.config import Settings
from nextoffer.domain.errors import RegistryError
from nextoffer.registry.protocol import ModelRegistryProtocol, ModelVersionInfo
from nextoffer.registry.urls import ARTIFACTS_SETTING, absolute_artifacts_url
from nextoffer.storage import ObjectStore, open_prefix
from nextoffer.store import Engine
from nextoffer.store.serving_champions import (
    forget_serving_champion,
    read_serving_champions,
    record_serving_champion,
)

log = logging.getLogger(__name__)
M = TypeVar("M")

SERVING_PREFIX = "serving"
MANIFEST = "manifest.json"
FILES = "files"
# The artifact stores `nextoffer.storage` reads and writes; others (mlflow-artifacts://, a
# tracking server's proxy) have no serving copy, and serving reads through MLflow instead.
MIRRORED_SCHEMES = frozenset({"file", "s3"})


class ServingFiles:
    """Copies of model versions under the artifact store's `serving/` prefix."""

    def __init__(self, artifacts_url: str, endpoint_url: str = "") -> None:
        self.root = f"{absolute_artifacts_url(artifacts_url).rstrip('/')}/{SERVING_PREFIX}"
        self.endpoint_url = endpoint_url

    @classmethod
    def from_settings(cls, settings: Settings) -> ServingFiles | None:
        """The copies under NEXTOFFER_ARTIFACTS_URL; None for a store nextoffer cannot read."""
        if urlsplit(settings.artifacts_url).scheme not in MIRRORED_SCHEMES:
            return None
        return cls(settings.artifacts_url, settings.s3_endpoint_url)

    def url(self, kind: str, version: int) -> str:
        """Where the copy of `kind` v`version` is."""
        return f"{self.root}/{kind}/v{int(version)}"

    def publish(self, kind: str, version: int, model_dir: Path) -> str:
        """Copy `model_dir` as `kind` v`version`; return its URL. The manifest goes last."""
        url = self.url(kind, version)
        store = self._open(url)
        names = sorted(
            p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file()
        )
        if not names:
            raise RegistryError(f"{model_dir} holds no model files to copy for serving")
        for name in names:
            store.upload(model_dir / name, f"{FILES}/{name}")
        store.put_bytes(json.dumps({"files": names}).encode(), MANIFEST)
        return url

    def has(self, kind: str, version: int) -> bool:
        """True when a complete copy of `kind` v`version` is stored."""
        return self._open(self.url(kind, version)).exists(MANIFEST)

    def remove(self, kind: str, version: int) -> None:
        """Delete the copy of `kind` v`version` (pruned with the version's other artifacts)."""
        store = self._open(self.url(kind, version))
        # The manifest first: a half-deleted copy must read as absent, not as complete.
        store.delete([MANIFEST])
        store.delete([o.key for o in store.list()])

    def load(self, url: str, loader: Callable[[Path], M]) -> M:
        """Download the copy at `url` into a temporary folder, load it, remove the folder."""
        folder = Path(tempfile.mkdtemp(prefix="nextoffer-serving-"))
        try:
            fetch(self._open(url), folder)
            return loader(folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _open(self, url: str) -> ObjectStore:
        return open_prefix(url, endpoint_url=self.endpoint_url, setting=ARTIFACTS_SETTING)


def fetch(store: ObjectStore, folder: Path) -> None:
    """The files a copy's manifest lists, into `folder` (NotFoundError without a manifest)."""
    names = json.loads(store.get_bytes(MANIFEST))["files"]
    for name in names:
        target = folder / PurePosixPath(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        store.download(f"{FILES}/{name}", target)


class ServingMirror:
    """Keeps the serving copy in step with the registry: files per version, a row per kind."""

    def __init__(self, engine: Engine, files: ServingFiles) -> None:
        self.engine = engine
        self.files = files

    @classmethod
    def from_settings(cls, settings: Settings, engine: Engine) -> ServingMirror | None:
        """The mirror for this database and artifact store; None where there can be none."""
        files = ServingFiles.from_settings(settings)
        return None if files is None else cls(engine, files)

    def record(self, kind: str, version: int, metrics: Mapping[str, float]) -> None:
        """Make `version` the champion serving loads for `kind` (its copy must exist)."""
        url = self.files.url(kind, version)
        record_serving_champion(self.engine, kind, version, url, metrics, datetime.now(UTC))
        log.info("serving copy: %s champion is v%d (%s)", kind, version, url)

    def is_empty(self) -> bool:
        """True when no champion is recorded yet (serving then asks the registry itself)."""
        return not read_serving_champions(self.engine)

    def forget(self, kind: str) -> None:
        """No champion of `kind`: drop its row."""
        forget_serving_champion(self.engine, kind)


class ServingChampions:
    """The champions as serving's table records them, for readers such as the /metrics gauges.

    `champion(kind)` answers from the `serving_champions` rows. A table with any row holds
    every champion (a kind without a row has none); only an empty one (a database from
    before migration 0011, or nothing trained yet) has `registry` asked itself.
    """

    def __init__(self, engine: Engine, registry: ModelRegistryProtocol) -> None:
        self.engine = engine
        self.registry = registry

    def champion(self, kind: str) -> ModelVersionInfo | None:
        """The champion of `kind` with its metrics; None when there is none."""
        rows = read_serving_champions(self.engine)
        if not rows:
            return self.registry.champion(kind)
        row = rows.get(kind)
        if row is None:
            return None
        return ModelVersionInfo(
            kind=kind,
            version=row.version,
            run_id="",
            created_at=row.promoted_at,
            metrics=dict(row.metrics),
            params={},
            tags={},
            is_champion=True,
            artifacts_deleted=False,
        )
