"""Restore a backup: into a database (logical), or as a cluster recovered to a time (PITR)."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from nextoffer.config import Settings
from nextoffer.domain.errors import ConfigError, NextOfferError
from nextoffer.domain.results import Counted
from nextoffer.ops import pgtools, registry_backup, sqlitefiles, tablestats, wal
from nextoffer.ops.backup import PG_DUMP_FILE, SQLITE_FILE, backup_store, work_dir
from nextoffer.ops.manifest import (
    BackupError,
    Manifest,
    TableStat,
    base_key,
    file_sha256,
    list_manifests,
    pick_manifest,
)
from nextoffer.pipelines.erasures import reapply_erasures
from nextoffer.storage import ObjectStore, file_url_path
from nextoffer.store import DatabaseError, Engine
from nextoffer.store.engine import has_table, make_engine, safe_url
from nextoffer.store.runs import record_finished_run, utcnow

DATABASE_SETTING = "NEXTOFFER_DATABASE_URL"
TARGET_OPTION = "--target-url"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestoreResult(Counted):
    """What a restore did. `data_dir` is set for a point-in-time restore, `target` otherwise."""

    COUNTED = (
        "backup_id",
        "tables",
        "rows",
        "registry_restored",
        "artifact_files",
        "erased_again",
        "data_dir",
        "to_time",
        "seconds",
    )

    backup_id: str
    target: str
    tables: int = 0
    rows: int = 0
    registry_restored: bool = False
    artifact_files: int = 0
    erased_again: int = 0
    """Customers erased since the backup was taken, found in it and erased again."""
    champions: dict[str, int] = field(default_factory=dict)
    data_dir: str | None = None
    to_time: datetime | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for the CLI and logs."""
        if self.data_dir is not None:
            assert self.to_time is not None
            return (
                f"restore: base backup {self.backup_id} → {self.data_dir}, set to recover to "
                f"{self.to_time.isoformat()} · {self.seconds:.1f} s"
            )
        champions = ", ".join(f"{k} v{v}" for k, v in sorted(self.champions.items()))
        registry = f" · registry ({champions or 'no champions'})" if self.registry_restored else ""
        erased = (
            f" · {self.erased_again:,} erased customers erased again" if self.erased_again else ""
        )
        return (
            f"restore: backup {self.backup_id} → {self.target} · {self.tables} tables · "
            f"{self.rows:,} rows, counts and checksums match{registry}{erased} · "
            f"{self.seconds:.1f} s"
        )


def restore_backup(
    settings: Settings,
    backup_id: str | None,
    target_url: str | None,
    force: bool,
    to_time: datetime | None,
    *,
    registry: bool = True,
) -> RestoreResult:
    """Restore backup `backup_id` (default: the newest).

    Without `to_time`: the database goes into `target_url` (default: the configured one),
    created when missing; then per-table counts and checksums are compared with the
    manifest; then the registry database and model files are put back (unless `registry`
    is False). A database that already holds tables, or an existing registry, is replaced
    only with `force`.

    With `to_time` (PostgreSQL with WAL archiving): a new data directory is built at
    `target_url` (a path or file:// URL; default VAR_DIR/pitr/<time>) from the newest base
    backup finished before `to_time`, set to replay archived WAL up to it; start a server
    on it to finish the recovery.
    """
    if to_time is not None:
        return _restore_to_time(settings, backup_id, target_url, force, to_time)
    clock = time.perf_counter()
    started = utcnow()
    store = backup_store(settings)
    manifest = pick_manifest(store, backup_id)
    target = target_url or settings.database_url
    setting = TARGET_OPTION if target_url else DATABASE_SETTING
    # Everything that can refuse does so before anything is downloaded or touched.
    _check_target(manifest, target, setting, force)
    registry_db = registry and manifest.registry.kind != "none"
    if registry_db and not force:
        occupied = registry_backup.registry_needs_force(settings)
        if occupied:
            raise BackupError(f"restore: {occupied}; pass --force to replace it, or --no-registry")
    notes: list[str] = []
    if manifest.registry.kind == "none" and manifest.registry.note:
        notes.append(manifest.registry.note)
    with work_dir(settings, "restore") as tmp:
        if manifest.engine == "postgresql":
            dump = fetch_checked(store, manifest, PG_DUMP_FILE, tmp)
            stats = restore_postgres(settings, dump, target, setting, replace=force)
        else:
            packed = fetch_checked(store, manifest, SQLITE_FILE, tmp)
            stats = restore_sqlite(packed, sqlitefiles.sqlite_path(target, setting), manifest)
        _raise_differences(manifest, stats)
        artifact_files = 0
        champions: dict[str, int] = {}
        if registry_db:
            assert manifest.registry.file is not None
            registry_file = fetch_checked(store, manifest, manifest.registry.file, tmp)
            registry_backup.restore_registry(settings, manifest.registry, registry_file, force)
        if registry and manifest.artifacts:
            packed_models = fetch_checked(store, manifest, registry_backup.ARTIFACTS_FILE, tmp)
            artifact_files = registry_backup.restore_artifacts(settings, packed_models, tmp)
        if registry_db:
            champions = registry_backup.current_champions(settings)
            if champions != manifest.champions:
                raise BackupError(
                    f"restore: champions after restore {champions} differ from the backup's "
                    f"{manifest.champions}"
                )
    if registry:
        _sync_serving(settings, target, notes)
    # The backup is older than erasures made since: the ledger kept outside the database
    # names them, and they are erased again before anything reads the restored data.
    erased_again = _reapply_erasures(settings, store, target)
    result = RestoreResult(
        backup_id=manifest.backup_id,
        target=_safe(target),
        tables=len(stats),
        rows=sum(t.rows for t in stats),
        registry_restored=registry_db,
        artifact_files=artifact_files,
        erased_again=erased_again,
        champions=champions,
        notes=notes,
        seconds=round(time.perf_counter() - clock, 3),
    )
    _record_restore(target, manifest, started, result)
    log.info(result.summary(), extra={"backup_id": manifest.backup_id})
    return result


def _sync_serving(settings: Settings, target: str, notes: list[str]) -> None:
    """Serving's champions table and file copies, made to match the registry as restored.

    The restored table describes the registry of the backup's time, and backups do not
    pack the serving copies (they are remade from the registry's files).
    """
    engine = _target_engine(target)
    try:
        registry_backup.sync_serving(settings, engine)
    except NextOfferError as exc:
        notes.append(f"serving champions not recorded ({exc}); run `nextoffer models sync`")
    finally:
        engine.dispose()


def _target_engine(target: str) -> Engine:
    if target.startswith("sqlite"):
        return make_engine(target)
    return make_engine(str(pgtools.psycopg_url(target, TARGET_OPTION).render_as_string(False)))


def _reapply_erasures(settings: Settings, store: ObjectStore, target: str) -> int:
    """Erase again, in the restored database, whoever the erasure ledger names."""
    engine = _target_engine(target)
    try:
        if not has_table(engine, "erasure_ledger"):  # a backup from before migration 0009
            log.warning(
                "restore: no erasure ledger in this backup; run `nextoffer db upgrade` then "
                "`nextoffer customers reapply` before serving it"
            )
            return 0
        return reapply_erasures(engine, settings, store).customers
    finally:
        engine.dispose()


def _safe(url: str) -> str:
    return safe_url(url) if "://" in url else url


def _check_target(manifest: Manifest, target: str, setting: str, force: bool) -> None:
    """Refuse a target of another engine, or one holding tables without `force`."""
    engine = pgtools.parse_url(target, setting).get_backend_name()
    if engine != manifest.engine:
        raise ConfigError(
            f"{setting}: backup {manifest.backup_id} is of a {manifest.engine} database; "
            f"it cannot be restored into {engine}"
        )
    if engine == "postgresql":
        tables = pgtools.user_table_count(target, setting)
    else:
        tables = sqlitefiles.table_count(sqlitefiles.sqlite_path(target, setting))
    if tables and not force:
        raise BackupError(
            f"restore: {_safe(target)} already holds {tables} tables; pass --force to "
            "replace them (or restore into another database with --target-url)"
        )


def fetch_checked(store: ObjectStore, manifest: Manifest, name: str, tmp: Path) -> Path:
    """Download one file of the backup and check its size and SHA-256 against the manifest."""
    entry = manifest.file(name)
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    store.download(base_key(manifest.backup_id, name), path)
    if path.stat().st_size != entry.size or file_sha256(path) != entry.sha256:
        raise BackupError(
            f"backup {manifest.backup_id}: {name} does not match its SHA-256 in the manifest "
            "(corrupt or tampered with); restore another backup"
        )
    return path


def restore_postgres(
    settings: Settings, dump: Path, target: str, setting: str, *, replace: bool
) -> list[TableStat]:
    """pg_restore into `target` (created when missing), then read its table stats."""
    if not pgtools.database_exists(target, setting):
        pgtools.create_database(target, setting)
    jobs = 1 if replace else max(1, min(4, os.cpu_count() or 1))
    pgtools.restore_dump(
        dump, target, setting, settings.postgres_bin_dir, replace=replace, jobs=jobs
    )
    engine = make_engine(str(pgtools.psycopg_url(target, setting).render_as_string(False)))
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                return tablestats.postgres_stats(conn)
    finally:
        engine.dispose()


def _raise_differences(manifest: Manifest, stats: list[TableStat]) -> None:
    problems = tablestats.compare_stats(manifest.tables, stats)
    if problems:
        raise BackupError(
            f"restore: the restored database differs from backup {manifest.backup_id}: "
            + "; ".join(problems[:5])
        )


def restore_sqlite(packed: Path, target: Path, manifest: Manifest) -> list[TableStat]:
    """Unpack next to `target` and check it against the manifest, then put it in place.

    Unlike PostgreSQL, the check comes before the live file is touched.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.with_name(f".{target.name}.restore")
    try:
        sqlitefiles.gunzip_file(packed, staged)
        problem = sqlitefiles.integrity_problem(staged)
        if problem is not None:
            raise BackupError(f"restore: the backup's database file is damaged: {problem}")
        stats = tablestats.sqlite_stats(staged)
        _raise_differences(manifest, stats)
        sqlitefiles.replace_database(staged, target)
    finally:
        staged.unlink(missing_ok=True)
    return stats


def _record_restore(
    target: str, manifest: Manifest, started: datetime, result: RestoreResult
) -> None:
    """Record the restore in the restored database, and close the backup's own run there.

    The backup's run was `running` when its snapshot was taken; the manifest proves it
    finished, so the restored row says so. Recorded after the restore (the restore replaces
    `job_runs`), best effort: a restored database without that table is still restored.
    """
    engine = _target_engine(target)
    try:
        record_finished_run(
            engine,
            "backup_restore",
            started,
            result.counts(),
            also_finished=(manifest.run_id, manifest.finished_at),
        )
    except DatabaseError as exc:
        log.warning("restore: could not record the run in job_runs: %s", type(exc).__name__)
    finally:
        engine.dispose()


def _restore_to_time(
    settings: Settings,
    backup_id: str | None,
    target_url: str | None,
    force: bool,
    to_time: datetime,
) -> RestoreResult:
    clock = time.perf_counter()
    started = utcnow()
    if to_time.tzinfo is None:
        raise ConfigError("--to-time needs a time zone (e.g. 2026-01-05T10:30:00Z)")
    to_time = to_time.astimezone(UTC)
    if to_time > utcnow():
        raise ConfigError(f"--to-time {to_time.isoformat()} is in the future")
    store = backup_store(settings)
    if backup_id:
        manifest = pick_manifest(store, backup_id)
        if manifest.physical is None:
            raise BackupError(f"backup {backup_id} has no base backup for --to-time")
        if manifest.physical.finished_at > to_time:
            raise BackupError(
                f"backup {backup_id} finished at {manifest.physical.finished_at.isoformat()}, "
                "after --to-time; pick an older one"
            )
    else:
        manifest = wal.pick_base(list_manifests(store), to_time)
    assert manifest.physical is not None
    if target_url:
        data_dir = file_url_path(target_url)
    else:
        data_dir = (settings.var_dir / "pitr" / f"{to_time:%Y%m%dT%H%M%SZ}").resolve()
    wal.ensure_writable_target(data_dir, force)
    with work_dir(settings, "pitr") as tmp:
        files = {
            name: fetch_checked(store, manifest, f"{wal.PHYSICAL_DIR}/{name}", tmp)
            for name in manifest.physical.files
            if name in {wal.BASE_TAR, wal.WAL_TAR}
        }
        try:
            wal.prepare_data_dir(settings, files, data_dir, to_time)
        except BaseException:
            wal.clear_data_dir(data_dir)
            raise
    result = RestoreResult(
        backup_id=manifest.backup_id,
        target=str(data_dir),
        data_dir=str(data_dir),
        to_time=to_time,
        notes=[
            f"start a server on it (pg_ctl -D {data_dir} start): it replays WAL up to "
            "the target time, then promotes and accepts writes",
            "then run `nextoffer customers reapply` against it before anything reads it: it "
            "erases again the customers erased since that time (the nightly ETL does too)",
            wal.owner_hint(data_dir),
        ],
        seconds=round(time.perf_counter() - clock, 3),
    )
    _record_pitr(settings, manifest, started, result)
    return result


def _record_pitr(
    settings: Settings, manifest: Manifest, started: datetime, result: RestoreResult
) -> None:
    """Record a point-in-time restore in the configured database, when it answers."""
    try:
        engine = make_engine(settings.database_url)
    except ConfigError:
        return
    try:
        record_finished_run(engine, "backup_restore", started, result.counts())
    except DatabaseError as exc:
        log.warning("restore: could not record the run in job_runs: %s", type(exc).__name__)
    finally:
        engine.dispose()
