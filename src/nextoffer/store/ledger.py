"""The ingest ledger: which source files were loaded, so the nightly ETL loads only new ones."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, select
from sqlalchemy.dialects import postgresql, sqlite

from nextoffer.store.runs import utcnow
from nextoffer.store.schema import IngestLedgerEntry

# Bound parameters per IN (...) query: well under SQLite's and PostgreSQL's limits.
_IN_CHUNK = 500


@dataclass(frozen=True)
class LedgerEntry:
    """One loaded source file: where from, which content, by which run, with what counts."""

    uri: str
    sha256: str
    size: int
    entity: str
    run_id: str
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    etag: str | None = None
    loaded_at: datetime | None = None


@dataclass
class LedgerIndex:
    """What the ledger knows about a set of URIs, to decide what is new without re-reading it."""

    contents: set[tuple[str, str]] = field(default_factory=set)
    etags: set[tuple[str, int, str]] = field(default_factory=set)

    def has_content(self, uri: str, sha256: str) -> bool:
        """True when this exact content was loaded from this URI before."""
        return (uri, sha256) in self.contents

    def has_object(self, uri: str, size: int, etag: str) -> bool:
        """True when an S3 object with this size and ETag was loaded from this URI before."""
        return (uri, size, etag) in self.etags


def ledger_index(engine: Engine, uris: Iterable[str]) -> LedgerIndex:
    """The ledger rows of `uris` (only those: the ledger grows by a few rows a night)."""
    wanted = sorted(set(uris))
    index = LedgerIndex()
    table = IngestLedgerEntry
    with engine.connect() as conn:
        for start in range(0, len(wanted), _IN_CHUNK):
            rows = conn.execute(
                select(table.uri, table.sha256, table.size, table.etag).where(
                    table.uri.in_(wanted[start : start + _IN_CHUNK])
                )
            )
            for uri, sha256, size, etag in rows:
                index.contents.add((uri, sha256))
                if etag:
                    index.etags.add((uri, int(size), etag))
    return index


def record_load(engine: Engine, entry: LedgerEntry) -> None:
    """Write (or, when the same content is loaded again, refresh) a file's ledger row."""
    values = {
        "uri": entry.uri,
        "sha256": entry.sha256,
        "size": entry.size,
        "etag": entry.etag,
        "entity": entry.entity,
        "run_id": entry.run_id,
        "loaded_at": entry.loaded_at or utcnow(),
        "rows_read": entry.rows_read,
        "rows_loaded": entry.rows_loaded,
        "rows_quarantined": entry.rows_quarantined,
    }
    with engine.begin() as conn:
        insert = _insert_for(conn.dialect.name)
        changed = {k: v for k, v in values.items() if k not in ("uri", "sha256")}
        conn.execute(
            insert.values(**values).on_conflict_do_update(
                index_elements=["uri", "sha256"], set_=changed
            )
        )


def _insert_for(dialect: str) -> postgresql.Insert | sqlite.Insert:
    if dialect == "postgresql":
        return postgresql.insert(IngestLedgerEntry)
    if dialect == "sqlite":
        return sqlite.insert(IngestLedgerEntry)
    raise NotImplementedError(f"ingest ledger: unsupported database {dialect!r}")


def list_entries(
    engine: Engine, *, limit: int = 50, uris: Sequence[str] | None = None
) -> list[LedgerEntry]:
    """The most recently loaded files, newest first (optionally only some URIs)."""
    table = IngestLedgerEntry
    query = select(table).order_by(table.loaded_at.desc(), table.id.desc()).limit(limit)
    if uris is not None:
        query = query.where(table.uri.in_(list(uris)))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        LedgerEntry(
            uri=r.uri,
            sha256=r.sha256,
            size=int(r.size),
            entity=r.entity,
            run_id=r.run_id,
            rows_read=int(r.rows_read),
            rows_loaded=int(r.rows_loaded),
            rows_quarantined=int(r.rows_quarantined),
            etag=r.etag,
            loaded_at=r.loaded_at,
        )
        for r in rows
    ]
