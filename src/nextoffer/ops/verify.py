"""Verify a backup: check every file's SHA-256, restore into a scratch database, compare."""

from __future__ import annotations

import contextlib
import logging
import tarfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from nextoffer.config import Settings
from nextoffer.domain.errors import NextOfferError
from nextoffer.domain.results import Counted
from nextoffer.ops import pgtools, sqlitefiles, tablestats
from nextoffer.ops.backup import PG_DUMP_FILE, SQLITE_FILE, backup_store, work_dir
from nextoffer.ops.manifest import BackupError, Manifest, TableStat, pick_manifest
from nextoffer.ops.registry_backup import ARTIFACTS_FILE
from nextoffer.ops.restore import fetch_checked, restore_postgres
from nextoffer.store.runs import RunHandle

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifyResult(Counted):
    """The outcome of verifying one backup: `ok`, or the problems found."""

    COUNTED = ("backup_id", "ok", "problems", "tables", "rows", "bytes", "seconds")

    backup_id: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    tables: int = 0
    rows: int = 0
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for the CLI and logs."""
        if self.ok:
            return (
                f"verify: backup {self.backup_id} OK · {self.files} files ({self.bytes:,} bytes) "
                f"match their SHA-256 · restored {self.tables} tables, {self.rows:,} rows, "
                f"counts and checksums match · {self.seconds:.1f} s"
            )
        return (
            f"verify: backup {self.backup_id} FAILED · {len(self.problems)} problems: "
            + "; ".join(self.problems[:5])
        )


class BackupVerifyError(BackupError):
    """A backup that failed its checks: fails the `backup_verify` run, carries the result."""

    def __init__(self, result: VerifyResult) -> None:
        self.result = result
        super().__init__(result.summary())


def check_backup(settings: Settings, backup_id: str | None, run: RunHandle) -> VerifyResult:
    """Check backup `backup_id` (default: the newest) without touching the live data.

    Every stored file must match its size and SHA-256; the database is restored into a
    scratch database (PostgreSQL: a temporary database on the configured server, dropped
    afterwards; SQLite: a temporary file) and its per-table row counts and checksums must
    equal those the manifest took from the live database at backup time. The registry
    database must open, the model files' archive must list the files the manifest counts.
    `run` is the `backup_verify` job's run: it gets the counts, and a problem found raises
    BackupVerifyError so that the run is recorded failed (nextoffer.jobs records it).
    """
    store = backup_store(settings)
    manifest = pick_manifest(store, backup_id)
    with work_dir(settings, "verify") as tmp:
        clock = time.perf_counter()
        problems: list[str] = []
        fetched: dict[str, Path] = {}
        for entry in manifest.files:
            try:
                fetched[entry.name] = fetch_checked(store, manifest, entry.name, tmp)
            except NextOfferError as exc:
                problems.append(str(exc))
        stats: list[TableStat] = []
        db_name = PG_DUMP_FILE if manifest.engine == "postgresql" else SQLITE_FILE
        if db_name in fetched:
            try:
                stats = _restore_scratch(settings, manifest, fetched[db_name], tmp)
            except NextOfferError as exc:
                problems.append(f"restore into a scratch database failed: {exc}")
            else:
                problems += tablestats.compare_stats(manifest.tables, stats)
        problems += _check_registry(manifest, fetched)
        result = VerifyResult(
            backup_id=manifest.backup_id,
            ok=not problems,
            problems=problems,
            tables=len(stats),
            rows=sum(t.rows for t in stats),
            files=len(fetched),
            bytes=sum(p.stat().st_size for p in fetched.values()),
            seconds=round(time.perf_counter() - clock, 3),
        )
    run.counts.update(result.counts())
    if not result.ok:
        log.error(result.summary(), extra={"backup_id": manifest.backup_id})
        raise BackupVerifyError(result)
    log.info(result.summary(), extra={"backup_id": manifest.backup_id})
    return result


def _restore_scratch(
    settings: Settings, manifest: Manifest, db_file: Path, tmp: Path
) -> list[TableStat]:
    if manifest.engine == "sqlite":
        target = tmp / "scratch.sqlite"
        sqlitefiles.gunzip_file(db_file, target)
        problem = sqlitefiles.integrity_problem(target)
        if problem is not None:
            raise BackupError(f"the database file is damaged: {problem}")
        return tablestats.sqlite_stats(target)
    live = pgtools.parse_url(settings.database_url, "NEXTOFFER_DATABASE_URL")
    if live.get_backend_name() != "postgresql":
        raise BackupError(
            "a PostgreSQL backup is verified on a PostgreSQL server: NEXTOFFER_DATABASE_URL "
            "is not one"
        )
    # A database name of our own on the live server: nothing else uses it, and it goes.
    scratch = live.set(database=f"nextoffer_verify_{uuid.uuid4().hex[:12]}")
    url = scratch.render_as_string(hide_password=False)
    try:
        return restore_postgres(settings, db_file, url, "NEXTOFFER_DATABASE_URL", replace=False)
    finally:
        with contextlib.suppress(NextOfferError):
            pgtools.drop_database(url, "NEXTOFFER_DATABASE_URL")


def _check_registry(manifest: Manifest, fetched: dict[str, Path]) -> list[str]:
    problems: list[str] = []
    part = manifest.registry
    if part.kind == "sqlite" and part.file in fetched:
        path = fetched[part.file].with_suffix("")
        sqlitefiles.gunzip_file(fetched[part.file], path)
        problem = sqlitefiles.integrity_problem(path)
        if problem is not None:
            problems.append(f"{part.file}: the registry database is damaged: {problem}")
    if manifest.artifacts and ARTIFACTS_FILE in fetched:
        expected = sum(v.files for v in manifest.artifacts)
        try:
            with tarfile.open(fetched[ARTIFACTS_FILE], "r:gz") as tar:
                found = sum(1 for member in tar if member.isfile())
        except (tarfile.TarError, OSError, EOFError) as exc:
            problems.append(f"{ARTIFACTS_FILE}: unreadable: {exc}")
        else:
            if found != expected:
                problems.append(
                    f"{ARTIFACTS_FILE}: {found} model files, the manifest counts {expected}"
                )
    return problems
