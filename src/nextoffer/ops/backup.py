"""Backups: create (database, registry, model files, base backup), list, and prune by GFS."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nextoffer
from nextoffer.config import Settings
from nextoffer.domain.errors import ConfigError
from nextoffer.domain.results import Counted
from nextoffer.ops import pgtools, registry_backup, sqlitefiles, tablestats, wal
from nextoffer.ops.manifest import (
    BASE,
    MANIFEST,
    WAL,
    FileEntry,
    Manifest,
    PhysicalPart,
    TableStat,
    backup_time,
    base_key,
    file_sha256,
    is_backup_id,
    list_manifests,
    new_backup_id,
    write_manifest,
)
from nextoffer.ops.retention import RetentionPolicy, gfs_keep
from nextoffer.storage import ObjectStore, open_prefix
from nextoffer.store import Engine
from nextoffer.store.engine import (
    has_table,
    is_postgres,
    make_engine,
    safe_url,
    wait_for_database,
)
from nextoffer.store.runs import RunHandle, utcnow

DATABASE_SETTING = "NEXTOFFER_DATABASE_URL"
PG_DUMP_FILE = "db.dump"
SQLITE_FILE = "db.sqlite.gz"
# A backup folder without a manifest this old is a backup that died half-way.
INCOMPLETE_AFTER = timedelta(days=1)

log = logging.getLogger(__name__)


def backup_store(settings: Settings) -> ObjectStore:
    """The store NEXTOFFER_BACKUP_URL points at."""
    return open_prefix(settings.backup_url, endpoint_url=settings.s3_endpoint_url)


def live_engine(settings: Settings) -> Engine:
    """The configured database, once it answers, with nextoffer's tables (runs are recorded)."""
    engine = make_engine(settings.database_url)
    wait_for_database(engine, settings.db_wait_timeout_s)
    if not has_table(engine, "job_runs"):
        raise ConfigError(
            f"{DATABASE_SETTING}: {safe_url(engine.url)} has no nextoffer tables yet; "
            "run `nextoffer db upgrade` first"
        )
    return engine


@contextmanager
def work_dir(settings: Settings, purpose: str) -> Iterator[Path]:
    """A private scratch folder under VAR_DIR/tmp: dumps can be large, /tmp may be small."""
    root = settings.var_dir / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{purpose}-", dir=root))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_backup(settings: Settings, run: RunHandle) -> Manifest:
    """Back up the database, the registry and recent model files; return the manifest.

    PostgreSQL: `pg_dump -Fc` and the per-table checksums read one exported snapshot, so
    they describe the same data. SQLite: the backup API copies the file, and the checksums
    are read from that copy. With NEXTOFFER_WAL_ARCHIVE on PostgreSQL, a pg_basebackup is
    taken too, the start point of point-in-time recovery. The manifest is stored last: a
    backup without one is incomplete and ignored. `run` is the `backup` job's run (its
    id goes into the manifest, the counts into the run); the job holds the one-at-a-time
    lock and records the run (nextoffer.jobs).
    """
    store = backup_store(settings)
    engine = live_engine(settings)
    with work_dir(settings, "backup") as tmp:
        started = utcnow()
        clock = time.perf_counter()
        backup_id = new_backup_id(started)
        if settings.wal_archive and is_postgres(engine):
            wal.check_archiving(engine)  # before minutes of dumping, not after
        if is_postgres(engine):
            db_file, tables, server_version, schema = _dump_postgres(settings, engine, tmp)
            engine_name = "postgresql"
            method = tablestats.PG_METHOD
        else:
            db_file, tables, schema = _dump_sqlite(settings, tmp)
            server_version, engine_name, method = "", "sqlite", tablestats.SQLITE_METHOD
        files = [db_file]
        part, registry_files = registry_backup.backup_registry(settings, tmp)
        artifacts, champions, artifact_files = registry_backup.backup_artifacts(settings, tmp, part)
        files += registry_files + artifact_files
        physical: PhysicalPart | None = None
        if settings.wal_archive and engine_name == "postgresql":
            physical, physical_files = wal.base_backup(settings, engine, tmp)
            files += physical_files
        elif settings.wal_archive:
            log.warning("NEXTOFFER_WAL_ARCHIVE is on, but only PostgreSQL archives WAL")
        entries = _upload(store, backup_id, files, tmp)
        manifest = Manifest(
            backup_id=backup_id,
            created_at=started,
            finished_at=utcnow(),
            engine=engine_name,
            database=safe_url(engine.url),
            server_version=server_version,
            schema_version=schema,
            checksum_method=method,
            tables=tables,
            files=entries,
            registry=part,
            artifacts=artifacts,
            champions=champions,
            physical=physical,
            run_id=run.run_id,
            nextoffer_version=nextoffer.__version__,
            seconds=round(time.perf_counter() - clock, 3),
        )
        write_manifest(store, manifest)
        run.counts.update(manifest.counts())
    log.info(manifest.summary(), extra={"backup_id": backup_id, "bytes": manifest.size})
    return manifest


def _dump_postgres(
    settings: Settings, engine: Engine, tmp: Path
) -> tuple[Path, list[TableStat], str, str | None]:
    target = tmp / PG_DUMP_FILE
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            snapshot = str(conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one())
            dump = pgtools.start_dump(
                engine.url, target, DATABASE_SETTING, settings.postgres_bin_dir, snapshot
            )
            try:
                # While pg_dump writes, this transaction reads the same snapshot: the checksums
                # cost no extra wall time, and the snapshot stays valid until the dump is done.
                tables = tablestats.postgres_stats(conn)
                schema = tablestats.postgres_schema_version(conn)
                server_version = str(conn.exec_driver_sql("SHOW server_version").scalar_one())
            except BaseException:
                dump.kill()
                raise
            dump.wait(DATABASE_SETTING)
    return target, tables, server_version, schema


def _dump_sqlite(settings: Settings, tmp: Path) -> tuple[Path, list[TableStat], str | None]:
    source = sqlitefiles.sqlite_path(settings.database_url, DATABASE_SETTING)
    copy = tmp / "db.sqlite"
    sqlitefiles.online_copy(source, copy)
    tables = tablestats.sqlite_stats(copy)
    schema = tablestats.sqlite_schema_version(copy)
    packed = tmp / SQLITE_FILE
    sqlitefiles.gzip_file(copy, packed)
    copy.unlink()
    return packed, tables, schema


def _upload(store: ObjectStore, backup_id: str, files: list[Path], tmp: Path) -> list[FileEntry]:
    entries: list[FileEntry] = []
    for path in files:
        name = path.relative_to(tmp).as_posix()
        entries.append(FileEntry(name=name, size=path.stat().st_size, sha256=file_sha256(path)))
        store.upload(path, base_key(backup_id, name))
    return entries


def list_backups(settings: Settings) -> list[Manifest]:
    """Every complete backup in NEXTOFFER_BACKUP_URL, oldest first."""
    return list_manifests(backup_store(settings))


def retention_policy(settings: Settings) -> RetentionPolicy:
    """The GFS policy the settings describe."""
    return RetentionPolicy(
        keep_all_days=settings.backup_keep_all_days,
        keep_daily_weeks=settings.backup_keep_daily_weeks,
        keep_weekly_months=settings.backup_keep_weekly_months,
    )


@dataclass(frozen=True)
class PruneResult(Counted):
    """What a prune kept and deleted (or would, on a dry run)."""

    COUNTED = ("kept", "deleted", "incomplete_deleted", "wal_deleted", "dry_run")

    kept: list[str]
    deleted: list[str]
    incomplete_deleted: list[str] = field(default_factory=list)
    wal_deleted: int = 0
    dry_run: bool = False

    def summary(self) -> str:
        """One line for the CLI and logs."""
        verb = "would delete" if self.dry_run else "deleted"
        return (
            f"prune: kept {len(self.kept)} backups · {verb} {len(self.deleted)} backups, "
            f"{len(self.incomplete_deleted)} incomplete, {self.wal_deleted} WAL files"
        )


def prune_store(
    settings: Settings, now: datetime, run: RunHandle | None, *, dry_run: bool = False
) -> PruneResult:
    """Delete backups that GFS retention does not keep at `now`, and what they alone needed.

    Also deleted: backups left incomplete for a day, and WAL older than the oldest kept
    base backup needs. A dry run deletes nothing (and is no job run: `run` None). `run`
    is the `backup_prune` job's run, which gets the counts (nextoffer.jobs records it).
    """
    store = backup_store(settings)
    manifests = list_manifests(store)
    times = {m.backup_id: backup_time(m.backup_id) for m in manifests}
    keep = gfs_keep(times, now, retention_policy(settings))
    doomed = sorted(set(times) - keep)
    complete = set(times)
    folders: dict[str, list[str]] = {}
    for info in store.list(BASE):
        folder = info.key[len(BASE) :].split("/", 1)[0]
        folders.setdefault(folder, []).append(info.key)
    incomplete = sorted(
        folder
        for folder in folders
        if folder not in complete
        and is_backup_id(folder)
        and backup_time(folder) < now.astimezone(UTC) - INCOMPLETE_AFTER
    )
    kept_physical = [
        m.physical for m in manifests if m.backup_id in keep and m.physical is not None
    ]
    wal_doomed: list[str] = []
    if kept_physical:
        oldest = min(kept_physical, key=lambda p: wal.segment_order(p.start_wal))
        archived = [
            info.key[len(WAL) :].removesuffix(".gz")
            for info in store.list(WAL)
            if info.key.endswith(".gz")
        ]
        wal_doomed = wal.removable_wal(archived, oldest.start_wal)
    result = PruneResult(
        kept=sorted(keep),
        deleted=doomed,
        incomplete_deleted=incomplete,
        wal_deleted=len(wal_doomed),
        dry_run=dry_run,
    )
    if dry_run:
        return result
    for backup_id in doomed:
        # The manifest first: a half-deleted backup then counts as incomplete, not as
        # a backup that restores with files missing.
        store.delete([base_key(backup_id, MANIFEST)])
        store.delete(k for k in folders.get(backup_id, []) if not k.endswith(MANIFEST))
    for folder in incomplete:
        store.delete(folders[folder])
    store.delete(wal.wal_key(name) for name in wal_doomed)
    if run is not None:
        run.counts.update(result.counts())
    log.info(result.summary())
    return result
