"""The ingest job: import files from a folder or an s3:// prefix, validated, upserted, ledgered."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from nextoffer.config import Settings
from nextoffer.domain.errors import InputError
from nextoffer.domain.results import Counted, Total
from nextoffer.ingest.entities import BY_NAME, ENTITIES
from nextoffer.ingest.load import FileResult, load_file, load_known_ids
from nextoffer.ingest.mapping import IngestMapping, entry_from_dict, load_mapping
from nextoffer.ingest.remote import download, is_remote, list_import_objects
from nextoffer.ingest.sources import SourceFile, discover, entity_for
from nextoffer.ingest.validate import DuplicateTracker, ValidationContext
from nextoffer.pipelines.erasures import apply_erasures
from nextoffer.storage import s3_client
from nextoffer.store import Engine, loading
from nextoffer.store.ledger import LedgerEntry, ledger_index, record_load
from nextoffer.store.runs import utcnow

REFERENCED = ("products", "customers")


@dataclass
class IngestResult(Counted):
    """Counts of one ingest run, per file and in total."""

    COUNTED = (
        "rows_read",
        "rows_loaded",
        "rows_changed",
        "rows_quarantined",
        "rows_erased",
        "files",
        ("files_skipped", "skipped"),
    )
    run_id: str
    files: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    skipped: int = 0  # files left out because the ledger has their content already

    # Totals over the files: rows seen; rows that passed validation and are now stored;
    # rows inserted or updated (0 when the same input is loaded again); rows rejected.
    rows_read = Total("files")
    rows_loaded = Total("files")
    rows_changed = Total("files")
    rows_quarantined = Total("files")
    rows_erased = Total("files")  # rows of customers erased on request, dropped unread

    def summary(self) -> str:
        """The one-line summary printed at the end of a run."""
        rate = self.rows_read / self.seconds if self.seconds > 0 else 0.0
        skipped = f" · {self.skipped:,} files already loaded" if self.skipped else ""
        if self.rows_erased:
            skipped = f" · {self.rows_erased:,} of erased customers dropped{skipped}"
        if not self.files:
            return f"ingest: no new files{skipped} · {self.seconds:.1f} s"
        return (
            f"ingest: {self.rows_read:,} rows read · {self.rows_loaded:,} loaded "
            f"({self.rows_changed:,} new or changed) · {self.rows_quarantined:,} quarantined"
            f"{skipped} · {self.seconds:.1f} s ({rate:,.0f} rows/s)"
        )


@dataclass(frozen=True)
class StagedFile:
    """An import file ready to load: where it came from, a local copy to read, its hash.

    `uri` is the file's absolute path for a local source, `s3://bucket/key` for S3, and
    keys the ledger. `path` is the file itself for a local source and a downloaded copy
    for S3. Plain fields only, so that an Airflow task can hand it to the next one as JSON.
    """

    uri: str
    path: str
    entity: str
    sha256: str
    size: int
    etag: str | None = None
    mapping: dict[str, Any] | None = None
    """The mapping entry that reads it (`FileMapping` as JSON); `sha256` then covers both."""

    @property
    def ledger_uri(self) -> str:
        """The ledger's key: the URI, with `#<entity>` when a mapping reads the file."""
        return f"{self.uri}#{self.entity}" if self.mapping is not None else self.uri

    def source_file(self) -> SourceFile:
        """The loader's view of this file."""
        entry = None if self.mapping is None else entry_from_dict(self.mapping)
        return SourceFile(Path(self.path), BY_NAME[self.entity], self.sha256, self.size, entry)


def _staged(uri: str, found: SourceFile, etag: str | None = None) -> StagedFile:
    entry = None if found.mapping is None else found.mapping.model_dump(mode="json")
    return StagedFile(
        uri, str(found.path), found.entity.name, found.sha256, found.size, etag, entry
    )


@dataclass
class Staged:
    """The files of a source that are to be loaded, in load order, and those left out."""

    source: str
    files: list[StagedFile] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # URIs whose content is in the ledger
    staging_dir: str | None = None  # downloaded copies (s3://), removed once loaded

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, to pass between steps that run in separate processes."""
        return {
            "source": self.source,
            "files": [vars(f).copy() for f in self.files],
            "skipped": list(self.skipped),
            "staging_dir": self.staging_dir,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Staged:
        """The inverse of `to_dict`."""
        return cls(
            source=str(data["source"]),
            files=[StagedFile(**f) for f in data.get("files", [])],
            skipped=[str(u) for u in data.get("skipped", [])],
            staging_dir=data.get("staging_dir"),
        )


def read_mapping(path: str | None) -> IngestMapping | None:
    """The mapping file at `path` (read and checked now), or None without one."""
    return load_mapping(path) if path else None


# Downloads left by runs that failed before loading them are removed after this long.
STAGING_KEEP_S = 7 * 24 * 3600


def stage_source(
    engine: Engine,
    settings: Settings,
    source: str | Path,
    *,
    new_only: bool = False,
    mapping: IngestMapping | None = None,
) -> Staged:
    """Find the import files of a folder, a file or an s3:// prefix, ready to load.

    `new_only` leaves out files whose URI and content (SHA-256) are in the ledger, and, for
    S3, objects whose size and ETag are, without downloading them. With `new_only` a source
    holding no import files is "nothing new"; without it, it is an error. `mapping` reads
    the files its entries name (and says how); the ledger then keys each under
    `<uri>#<entity>` with a hash of the file and its mapping entry together.
    """
    text = str(source)
    if is_remote(text):
        return _stage_remote(engine, settings, text, new_only, mapping)
    return _stage_local(engine, Path(text), new_only, mapping)


def _is_import_file(path: Path, mapping: IngestMapping | None) -> bool:
    return entity_for(path) is not None or (
        mapping is not None and mapping.entry_for(path) is not None
    )


def _stage_local(
    engine: Engine, root: Path, new_only: bool, mapping: IngestMapping | None
) -> Staged:
    if new_only and root.is_dir() and not any(_is_import_file(p, mapping) for p in root.iterdir()):
        return Staged(str(root))  # an empty drop folder: nothing new tonight
    files = [_staged(str(f.path.resolve()), f) for f in discover(root, mapping)]
    return _left_out_if_loaded(engine, Staged(str(root), files), new_only)


def _stage_remote(
    engine: Engine, settings: Settings, url: str, new_only: bool, mapping: IngestMapping | None
) -> Staged:
    endpoint = settings.s3_endpoint_url
    client = s3_client(endpoint)
    objects = list_import_objects(
        client, url, endpoint, accept=lambda name: _is_import_file(Path(name), mapping)
    )
    if not objects and not new_only:
        names = ", ".join(e.name for e in ENTITIES)
        raise InputError(f"{url}: no import files found (expected {names} as .csv or .parquet)")
    index = ledger_index(engine, (o.uri for o in objects)) if new_only else None
    staged = Staged(url)
    todo = []
    for obj in objects:
        # A mapped object's ledger row also depends on the mapping: its content decides.
        mapped = mapping is not None and mapping.entry_for(Path(obj.name)) is not None
        if index is not None and not mapped and index.has_object(obj.uri, obj.size, obj.etag):
            staged.skipped.append(obj.uri)
        else:
            todo.append(obj)
    if not todo:
        return staged
    root = settings.var_dir / "staging"
    _prune_staging(root)
    folder = root / uuid.uuid4().hex
    by_name = {obj.name: obj for obj in todo}
    for obj in todo:
        download(client, obj, folder, endpoint)
    staged.staging_dir = str(folder)
    for f in discover(folder, mapping):  # the same order and hashing as a local folder
        obj = by_name[f.path.name]
        staged.files.append(_staged(obj.uri, f, obj.etag))
    staged = _left_out_if_loaded(engine, staged, new_only)
    if not staged.files:
        shutil.rmtree(folder, ignore_errors=True)
        staged.staging_dir = None
    return staged


def _left_out_if_loaded(engine: Engine, staged: Staged, new_only: bool) -> Staged:
    if not new_only or not staged.files:
        return staged
    index = ledger_index(engine, (f.ledger_uri for f in staged.files))
    keep = [f for f in staged.files if not index.has_content(f.ledger_uri, f.sha256)]
    staged.skipped += [f.uri for f in staged.files if index.has_content(f.ledger_uri, f.sha256)]
    staged.files = keep
    return staged


def _prune_staging(root: Path) -> None:
    if not root.is_dir():
        return
    cutoff = time.time() - STAGING_KEEP_S
    for folder in root.iterdir():
        if folder.is_dir() and folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)


def load_staged(
    engine: Engine,
    settings: Settings,
    staged: Staged,
    *,
    run_id: str | None = None,
    on_start: Callable[[list[SourceFile]], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> IngestResult:
    """Load staged files in order, recording each file in the ledger under `run_id`.

    `run_id` is the job run this load belongs to (nextoffer.jobs records the run itself);
    without one, a fresh id ties the ledger and quarantine rows together.

    A file enters the ledger only once it is loaded, so a run killed half way loads the
    rest (and re-upserts the part already loaded, which changes nothing) the next time.
    Downloaded copies are removed after a successful run; a failed one keeps them for a
    retry of this step.
    """
    started = time.perf_counter()
    sources = [f.source_file() for f in staged.files]
    if on_start is not None:
        on_start(sources)
    result = IngestResult(run_id=run_id or str(uuid.uuid4()), skipped=len(staged.skipped))
    now = utcnow() + timedelta(seconds=settings.ingest_clock_skew_s)
    known = {name: load_known_ids(engine, name) for name in REFERENCED} if sources else {}
    # A restored database may hold customers erased since its backup: erased again first.
    erased = apply_erasures(engine, settings) if sources else None
    for staged_file, source in zip(staged.files, sources, strict=True):
        ctx = ValidationContext(now=now, known=known, duplicates=DuplicateTracker())
        tables = load_file(
            engine,
            source,
            ctx,
            run_id=result.run_id,
            block_bytes=settings.ingest_block_bytes,
            quarantine_dir=settings.quarantine_dir,
            progress=progress,
            erased=erased,
        )
        for loaded in tables:  # the file's own entity first, then what a mapping derives
            if is_remote(staged_file.uri):
                _name_remote_source(engine, staged_file, loaded.entity)
                loaded.source = staged_file.uri
            uri = staged_file.uri
            if staged_file.mapping is not None:
                uri = f"{uri}#{loaded.entity}"
            record_load(
                engine,
                LedgerEntry(
                    uri=uri,
                    sha256=staged_file.sha256,
                    size=staged_file.size,
                    entity=loaded.entity,
                    run_id=result.run_id,
                    rows_read=loaded.rows_read,
                    rows_loaded=loaded.rows_loaded,
                    rows_quarantined=loaded.rows_quarantined,
                    etag=staged_file.etag,
                ),
            )
            result.files.append(loaded)
    result.seconds = time.perf_counter() - started
    if staged.staging_dir:
        shutil.rmtree(staged.staging_dir, ignore_errors=True)
    return result


def _name_remote_source(engine: Engine, staged_file: StagedFile, entity: str) -> None:
    """Quarantined rows of a downloaded file name the s3:// object, not the temporary copy."""
    loading.rename_quarantine_source(
        engine,
        sha256=staged_file.sha256,
        entity=entity,
        old=staged_file.path,
        new=staged_file.uri,
    )


def run_ingest(
    engine: Engine,
    settings: Settings,
    path: str | Path,
    *,
    new_only: bool = False,
    run_id: str | None = None,
    on_start: Callable[[list[SourceFile]], None] | None = None,
    progress: Callable[[int], None] | None = None,
    mapping: str | None = None,
) -> IngestResult:
    """Ingest every import file of a folder, a file or an s3:// prefix.

    Files load in dependency order; each loaded file is written to the ledger. With
    `new_only`, files whose content the ledger already has are left out. `mapping` is the
    path of a mapping file (see `ingest.mapping`). The job run is recorded by whoever
    started it (nextoffer.jobs), not here.
    """
    staged = stage_source(engine, settings, path, new_only=new_only, mapping=read_mapping(mapping))
    return load_staged(
        engine, settings, staged, run_id=run_id, on_start=on_start, progress=progress
    )
