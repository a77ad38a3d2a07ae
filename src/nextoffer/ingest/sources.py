"""Finding import files in a folder and telling which entity each one holds."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nextoffer.domain.errors import InputError
from nextoffer.ingest.entities import ENTITIES, Entity

if TYPE_CHECKING:
    from nextoffer.ingest.mapping import FileMapping, IngestMapping

SUFFIXES = (".csv", ".csv.gz", ".parquet")


@dataclass(frozen=True)
class SourceFile:
    """One import file: where it is, which entity it holds, and its content hash."""

    path: Path
    entity: Entity
    sha256: str
    size: int
    mapping: FileMapping | None = None
    """How the file is read when a mapping file names it (then `sha256` covers both)."""

    @property
    def is_parquet(self) -> bool:
        """Parquet files are read by row groups instead of text blocks."""
        return self.path.name.endswith(".parquet")


def entity_for(path: Path) -> Entity | None:
    """The entity a file holds, from its name: `transactions.csv`, `events-2026-11.csv.gz`..."""
    name = path.name
    if not name.endswith(SUFFIXES):
        return None
    stem = name.split(".", 1)[0]
    # Longest names first so that a shorter entity name never claims a longer one's files.
    for entity in sorted(ENTITIES, key=lambda e: -len(e.name)):
        if stem == entity.name or re.match(rf"{re.escape(entity.name)}[_-]", stem):
            return entity
    return None


def file_sha256(path: Path) -> str:
    """Content hash, used to key quarantined rows and the load ledger."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def mapped_sha256(file_sha256: str, mapping: FileMapping) -> str:
    """The content hash of a file read through a mapping entry: a new mapping, new content."""
    joined = f"{file_sha256}:{mapping.fingerprint()}"
    return hashlib.sha256(joined.encode()).hexdigest()


def source_file(path: Path, mapping: IngestMapping | None = None) -> SourceFile | None:
    """The import file at `path`, through the mapping entry that names it if there is one."""
    entry = mapping.entry_for(path) if mapping is not None else None
    if entry is not None:
        sha = mapped_sha256(file_sha256(path), entry)
        return SourceFile(path, entry.target, sha, path.stat().st_size, entry)
    entity = entity_for(path)
    if entity is None:
        return None
    return SourceFile(path, entity, file_sha256(path), path.stat().st_size)


def discover(root: Path, mapping: IngestMapping | None = None) -> list[SourceFile]:
    """Every import file under `root` (a folder or one file), in load order.

    Files are ordered by entity dependency (products before customers before
    transactions...) and then by name, so the same folder always loads the same way.
    With a mapping, files its entries name (`path`) are import files too.
    """
    if not root.exists():
        raise InputError(f"{root}: no such file or folder")
    paths = [root] if root.is_file() else sorted(p for p in root.iterdir() if p.is_file())
    found = [f for f in (source_file(path, mapping) for path in paths) if f is not None]
    if not found:
        names = ", ".join(e.name for e in ENTITIES)
        named = ""
        if mapping is not None:
            globs = [f.path for f in mapping.files if f.path]
            named = f", or {', '.join(globs)} named by {mapping.source}" if globs else ""
        raise InputError(
            f"{root}: no import files found (expected {names} as .csv or .parquet{named})"
        )
    order = {e.name: i for i, e in enumerate(ENTITIES)}
    return sorted(found, key=lambda s: (order[s.entity.name], s.path.name))
