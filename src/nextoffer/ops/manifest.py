"""What a backup holds (manifest.json), its id and layout in the store, and reading it back."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ValidationError

from nextoffer.domain.errors import NextOfferError, NotFoundError
from nextoffer.domain.results import Counted
from nextoffer.storage import ObjectStore

MANIFEST = "manifest.json"
BASE = "base/"
WAL = "wal/"
FORMAT = 1
# A backup id is its start time in UTC, to the millisecond: sortable as text, unique enough
# for one writer (backups take a lock), readable by a person choosing one to restore.
_ID = re.compile(r"^(\d{8}T\d{6})\.(\d{3})Z$")


class BackupError(NextOfferError):
    """A backup, restore or verification cannot go on; the message says why."""


class TableStat(BaseModel):
    """Rows of one table and an order-independent checksum of their content."""

    name: str
    rows: int
    checksum: str


class FileEntry(BaseModel):
    """One file of the backup, as stored under `base/<id>/`."""

    name: str
    size: int
    sha256: str


class RegistryPart(BaseModel):
    """How the model registry's own database was backed up (`none`: it was not; see note)."""

    kind: Literal["sqlite", "postgresql", "none"]
    file: str | None = None
    note: str = ""


class ArtifactVersion(BaseModel):
    """One model version whose files are in `artifacts.tar.gz`."""

    kind: str
    version: int
    run_id: str
    champion: bool
    files: int
    bytes: int


class PhysicalPart(BaseModel):
    """The pg_basebackup taken beside the dump when WAL archiving is on (for `--to-time`)."""

    start_wal: str
    start_lsn: str
    timeline: int
    finished_at: datetime
    files: list[str]


class Manifest(Counted, BaseModel):
    """Everything needed to trust, restore and verify one backup."""

    COUNTED: ClassVar[tuple[str | tuple[str, str], ...]] = (
        "backup_id",
        ("bytes", "size"),
        "tables",
        "rows",
        ("model_versions", "artifacts"),
        "physical",
        "seconds",
    )

    format: int = FORMAT
    backup_id: str
    created_at: datetime
    finished_at: datetime
    engine: Literal["postgresql", "sqlite"]
    database: str
    server_version: str = ""
    schema_version: str | None = None
    checksum_method: str
    tables: list[TableStat]
    files: list[FileEntry]
    registry: RegistryPart
    artifacts: list[ArtifactVersion] = []
    champions: dict[str, int] = {}
    physical: PhysicalPart | None = None
    run_id: str
    nextoffer_version: str
    seconds: float

    @property
    def size(self) -> int:
        """Bytes stored for this backup."""
        return sum(f.size for f in self.files)

    @property
    def rows(self) -> int:
        """Rows in every table at backup time."""
        return sum(t.rows for t in self.tables)

    def file(self, name: str) -> FileEntry:
        """The entry of file `name`; BackupError when the backup has no such file."""
        for entry in self.files:
            if entry.name == name:
                return entry
        raise BackupError(f"backup {self.backup_id} has no file {name}")

    def counts(self) -> dict[str, Any]:
        """The numbers a job run records for this backup; `physical`: has a base backup."""
        return {**super().counts(), "physical": self.physical is not None}

    def summary(self) -> str:
        """One line for the CLI and logs."""
        physical = " + base backup for point-in-time recovery" if self.physical else ""
        return (
            f"backup {self.backup_id}: {self.engine} · {len(self.tables)} tables · "
            f"{self.rows:,} rows · {_size(self.size)}{physical} · {self.seconds:.1f} s"
        )


def new_backup_id(now: datetime) -> str:
    """The id of a backup started at `now`: `YYYYmmddTHHMMSS.mmmZ` in UTC."""
    moment = now.astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%S}.{moment.microsecond // 1000:03d}Z"


def backup_time(backup_id: str) -> datetime:
    """The start time encoded in a backup id."""
    found = _ID.match(backup_id)
    if found is None:
        raise BackupError(f"{backup_id!r} is not a backup id (like 20260101T060000.000Z)")
    moment = datetime.strptime(found.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    return moment.replace(microsecond=int(found.group(2)) * 1000)


def is_backup_id(text: str) -> bool:
    """True when `text` has the shape of a backup id."""
    return _ID.match(text) is not None


def base_key(backup_id: str, name: str = "") -> str:
    """The key of file `name` of backup `backup_id` (the folder when `name` is empty)."""
    return f"{BASE}{backup_id}/{name}"


def write_manifest(store: ObjectStore, manifest: Manifest) -> None:
    """Store the manifest; written last, so a backup without one is incomplete."""
    store.put_bytes(
        manifest.model_dump_json(indent=2).encode(), base_key(manifest.backup_id, MANIFEST)
    )


def read_manifest(store: ObjectStore, backup_id: str) -> Manifest:
    """The manifest of `backup_id`; NotFoundError when there is no complete backup of that id."""
    backup_time(backup_id)  # a clear message for a mistyped id
    key = base_key(backup_id, MANIFEST)
    try:
        data = store.get_bytes(key)
    except NotFoundError:
        raise NotFoundError(f"no complete backup {backup_id} in {store.url}") from None
    try:
        return Manifest.model_validate_json(data)
    except ValidationError as exc:
        raise BackupError(
            f"{store.describe(key)} is not a valid manifest: {exc.errors()[0]['msg']}"
        ) from None


def list_manifests(store: ObjectStore) -> list[Manifest]:
    """Every complete backup in the store, oldest first."""
    ids = sorted(
        {
            info.key[len(BASE) :].split("/", 1)[0]
            for info in store.list(BASE)
            if info.key.endswith(f"/{MANIFEST}")
        }
    )
    return [read_manifest(store, backup_id) for backup_id in ids if is_backup_id(backup_id)]


def pick_manifest(store: ObjectStore, backup_id: str | None) -> Manifest:
    """The manifest of `backup_id`, or of the newest complete backup when it is None."""
    if backup_id:
        return read_manifest(store, backup_id)
    found = list_manifests(store)
    if not found:
        raise NotFoundError(f"no backups in {store.url} yet: run `nextoffer backup create`")
    return found[-1]


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
