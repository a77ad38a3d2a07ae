"""PostgreSQL WAL archiving to the backup store, physical base backups, point-in-time recovery.

`archive_command` calls `nextoffer backup wal-push %p %f`, which stores each finished WAL
segment gzipped under `wal/`. A base backup (pg_basebackup, tar format) is taken beside
each pg_dump when NEXTOFFER_WAL_ARCHIVE is on. A restore to a time extracts the newest base
backup finished before that time into a new data directory and configures recovery
(`recovery.signal`, `restore_command` = `nextoffer backup wal-fetch %f %p`,
`recovery_target_time`): started, PostgreSQL replays the archived WAL up to that time and
promotes. This restores a whole cluster, every database in it, never one database.
"""

from __future__ import annotations

import gzip
import os
import re
import shlex
import shutil
import sys
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from nextoffer.config import Settings
from nextoffer.domain.errors import ConfigError
from nextoffer.ops import pgtools
from nextoffer.ops.manifest import WAL, BackupError, Manifest, PhysicalPart
from nextoffer.storage import ObjectStore, file_url_path
from nextoffer.store import Engine
from nextoffer.store.engine import server_now, server_setting

DATABASE_SETTING = "NEXTOFFER_DATABASE_URL"
PHYSICAL_DIR = "pgdata"
BASE_TAR = "base.tar.gz"
WAL_TAR = "pg_wal.tar.gz"
# WAL segment names (timeline + log + segment, 24 hex digits), with the archiver's other
# files: a partial last segment, a backup history file, a timeline history file.
_WAL_NAME = re.compile(r"^[0-9A-F]{24}(\.partial|\.[0-9A-F]{8}\.backup)?$|^[0-9A-F]{8}\.history$")
_START_WAL = re.compile(r"^START WAL LOCATION: (\S+) \(file ([0-9A-F]{24})\)", re.MULTILINE)
_START_TIMELINE = re.compile(r"^START TIMELINE: (\d+)", re.MULTILINE)
_GZIP_LEVEL = 3


def check_wal_name(name: str) -> str:
    """`name` if it is a file name the WAL archiver hands over, else a ConfigError."""
    if not _WAL_NAME.match(name):
        raise ConfigError(f"{name!r} is not a WAL file name")
    return name


def wal_key(name: str) -> str:
    """Where WAL file `name` is kept in the backup store."""
    return f"{WAL}{check_wal_name(name)}.gz"


def wal_push(store: ObjectStore, source: Path, name: str) -> bool:
    """Archive one WAL file; False when the same file was already archived.

    PostgreSQL may call archive_command again for a file that was stored but not
    acknowledged (a crash in between): the same content is success, different content
    under the same name is an error, never an overwrite.
    """
    key = wal_key(name)
    with tempfile.TemporaryDirectory(prefix="nextoffer-wal-") as tmp:
        packed = Path(tmp) / "segment.gz"
        with (
            source.open("rb") as raw,
            packed.open("wb") as out,
            gzip.GzipFile(
                filename="", mode="wb", fileobj=out, compresslevel=_GZIP_LEVEL, mtime=0
            ) as gz,
        ):
            shutil.copyfileobj(raw, gz, 1024 * 1024)
        if store.exists(key):
            stored = Path(tmp) / "stored.gz"
            store.download(key, stored)
            if _same_content(stored, source):
                return False
            raise BackupError(
                f"wal-push: {store.describe(key)} exists with other content; refusing to "
                "overwrite it (is a second cluster archiving into the same NEXTOFFER_BACKUP_URL?)"
            )
        store.upload(packed, key)
    return True


def _same_content(packed: Path, raw: Path) -> bool:
    with gzip.open(packed, "rb") as a, raw.open("rb") as b:
        while True:
            left, right = a.read(1024 * 1024), b.read(1024 * 1024)
            if left != right:
                return False
            if not left:
                return True


def wal_fetch(store: ObjectStore, name: str, target: Path) -> None:
    """Copy archived WAL file `name` to `target` (NotFoundError when it was never archived)."""
    key = wal_key(name)
    with tempfile.TemporaryDirectory(prefix="nextoffer-wal-") as tmp:
        packed = Path(tmp) / "segment.gz"
        store.download(key, packed)
        staged = target.with_name(f".{target.name}.nextoffer-tmp")
        with gzip.open(packed, "rb") as gz, staged.open("wb") as out:
            shutil.copyfileobj(gz, out, 1024 * 1024)
        staged.replace(target)


def base_backup(
    settings: Settings, engine: Engine, workdir: Path
) -> tuple[PhysicalPart, list[Path]]:
    """Take a pg_basebackup of the cluster behind the database URL into `workdir`.

    Tar format, gzipped, with the WAL the backup needs streamed into `pg_wal.tar.gz`.

    Needs a role with REPLICATION and a `replication` line in pg_hba.conf for it.
    """
    target = workdir / PHYSICAL_DIR
    args = [
        pgtools.pg_program("pg_basebackup", settings.postgres_bin_dir),
        "--no-password",
        "-D",
        str(target),
        "-Ft",
        "-z",
        "-X",
        "stream",
        # A fast checkpoint: the backup starts now instead of at the next scheduled one.
        "-c",
        "fast",
        "-l",
        "nextoffer base backup",
    ]
    pgtools.run_pg(args, engine.url, "pg_basebackup", DATABASE_SETTING)
    extra = sorted(p.name for p in target.iterdir() if p.name not in {BASE_TAR, WAL_TAR})
    tablespaces = [name for name in extra if name.endswith(".tar.gz")]
    if tablespaces:
        raise BackupError(
            "pg_basebackup: the cluster has tablespaces outside the data directory "
            f"({', '.join(tablespaces)}); point-in-time backups support the default one only"
        )
    label = _backup_label(target / BASE_TAR)
    start = _START_WAL.search(label)
    timeline = _START_TIMELINE.search(label)
    if start is None or timeline is None:
        raise BackupError("pg_basebackup: no START WAL LOCATION in its backup_label")
    # The server's clock, not ours: recovery targets are compared with commit times it wrote.
    finished = server_now(engine)
    files = sorted(target.iterdir())
    part = PhysicalPart(
        start_wal=start.group(2),
        start_lsn=start.group(1),
        timeline=int(timeline.group(1)),
        finished_at=finished,
        files=[p.name for p in files],
    )
    return part, files


def check_archiving(engine: Engine) -> None:
    """Refuse a base backup no WAL will follow: it could never recover to a later time."""
    mode = server_setting(engine, "archive_mode")
    if mode == "off":
        raise ConfigError(
            "NEXTOFFER_WAL_ARCHIVE is on, but the server's archive_mode is off: set "
            "archive_mode = on and archive_command = 'nextoffer backup wal-push %p %f' "
            "(docs/backups.md), or turn NEXTOFFER_WAL_ARCHIVE off"
        )


def _backup_label(base_tar: Path) -> str:
    with tarfile.open(base_tar, "r:gz") as tar:
        member = tar.extractfile("backup_label")
        if member is None:
            raise BackupError(f"{base_tar.name} holds no backup_label")
        return member.read().decode()


def pick_base(manifests: list[Manifest], to_time: datetime) -> Manifest:
    """The newest backup whose base backup finished at or before `to_time`."""
    usable = [m for m in manifests if m.physical is not None and m.physical.finished_at <= to_time]
    if not usable:
        physical = [m for m in manifests if m.physical is not None]
        if not physical:
            raise BackupError(
                "no backup has a base backup for point-in-time recovery: turn on "
                "NEXTOFFER_WAL_ARCHIVE (and archive_command) and take a backup"
            )
        first = physical[0].physical
        assert first is not None
        raise BackupError(
            f"no base backup finished before {to_time.isoformat()}; the oldest finished at "
            f"{first.finished_at.isoformat()}"
        )
    return usable[-1]


def nextoffer_command() -> str:
    """How PostgreSQL should call this nextoffer: the script beside our Python, or on PATH."""
    beside = Path(sys.executable).with_name("nextoffer")
    if beside.is_file():
        return str(beside)
    found = shutil.which("nextoffer")
    if found is None:
        raise ConfigError("cannot find the nextoffer command to put in restore_command")
    return found


def fetch_command(settings: Settings) -> str:
    """The `restore_command` for a recovered cluster: our wal-fetch, with the store's URL."""
    url = settings.backup_url
    if urlsplit(url).scheme in {"", "file"}:
        # The server runs the command in its data directory: a relative path would miss.
        url = file_url_path(url).as_uri()
    parts = [f"NEXTOFFER_BACKUP_URL={shlex.quote(url)}"]
    if settings.s3_endpoint_url:
        parts.append(f"NEXTOFFER_S3_ENDPOINT_URL={shlex.quote(settings.s3_endpoint_url)}")
    program = settings.wal_nextoffer_command or shlex.quote(nextoffer_command())
    parts += [program, "backup", "wal-fetch", "%f", "%p"]
    return " ".join(parts)


def _conf_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def prepare_data_dir(
    settings: Settings,
    store_files: dict[str, Path],
    data_dir: Path,
    to_time: datetime,
) -> None:
    """Build a data directory from a base backup, set to recover up to `to_time` and promote.

    `store_files` maps the base backup's file names to downloaded, checked copies.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    with tarfile.open(store_files[BASE_TAR], "r:gz") as tar:
        tar.extractall(data_dir, filter="tar")
    wal_dir = data_dir / "pg_wal"
    wal_dir.mkdir(exist_ok=True)
    if WAL_TAR in store_files:
        with tarfile.open(store_files[WAL_TAR], "r:gz") as tar:
            tar.extractall(wal_dir, filter="tar")
    for leftover in ("standby.signal", "postmaster.pid"):
        (data_dir / leftover).unlink(missing_ok=True)
    (data_dir / "recovery.signal").write_text("")
    target = to_time.astimezone(UTC).isoformat(sep=" ")
    settings_text = (
        "\n# nextoffer backup restore --to-time: recover up to this moment, then promote.\n"
        f"restore_command = {_conf_string(fetch_command(settings))}\n"
        f"recovery_target_time = {_conf_string(target)}\n"
        "recovery_target_action = 'promote'\n"
    )
    with (data_dir / "postgresql.auto.conf").open("a", encoding="utf-8") as conf:
        conf.write(settings_text)


def data_dir_in_use(data_dir: Path) -> bool:
    """True when a server seems to run on `data_dir` (its postmaster.pid is there)."""
    return (data_dir / "postmaster.pid").exists()


def clear_data_dir(data_dir: Path) -> None:
    """Empty `data_dir` (kept: it may be a mount point)."""
    for child in data_dir.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def segment_order(name: str) -> str:
    """A WAL file's position ignoring its timeline (what pg_archivecleanup compares)."""
    return name[8:24]


def removable_wal(names: list[str], oldest_needed: str) -> list[str]:
    """WAL files older than segment `oldest_needed`; timeline history files always stay."""
    cutoff = segment_order(oldest_needed)
    return [
        name for name in names if not name.endswith(".history") and segment_order(name) < cutoff
    ]


def ensure_writable_target(data_dir: Path, force: bool) -> None:
    """Refuse a data directory in use, or holding files without `force`."""
    if data_dir.exists() and not data_dir.is_dir():
        raise BackupError(f"{data_dir} exists and is not a directory")
    if data_dir_in_use(data_dir):
        raise BackupError(f"{data_dir} has a postmaster.pid: stop that server first")
    if data_dir.is_dir() and any(data_dir.iterdir()):
        if not force:
            raise BackupError(f"{data_dir} is not empty; pass --force to replace its files")
        clear_data_dir(data_dir)


def owner_hint(data_dir: Path) -> str:
    """What to do so that the postgres user may start the recovered cluster."""
    if os.geteuid() == 0:
        return f"chown -R postgres:postgres {data_dir} before starting it"
    return "start it as this user, or chown it to the server's user"
