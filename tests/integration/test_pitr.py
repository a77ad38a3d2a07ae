"""Point-in-time recovery on a private PostgreSQL cluster archiving WAL through our wal-push.

Base backup 1 → rows → time T → more rows → base backup 2; a restore to T, started as a
second cluster, holds exactly the rows committed before T, including those written after
base backup 1, which no dump holds; a customer erased after T is back in it until the
erasure ledger kept outside the database is applied, and gone after.
"""

from __future__ import annotations

import shlex
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from nextoffer.cache.memory import MemoryCache
from nextoffer.config import Settings
from nextoffer.domain.errors import ConfigError, NotFoundError
from nextoffer.jobs.calls import create_backup
from nextoffer.ops.manifest import BackupError
from nextoffer.ops.restore import restore_backup
from nextoffer.ops.wal import wal_fetch, wal_key, wal_push
from nextoffer.pipelines.erasures import reapply_erasures
from nextoffer.platform import build_platform
from nextoffer.storage import FileStore
from nextoffer.store import migrate
from nextoffer.store.engine import make_engine
from nextoffer.usecases.privacy import forget_customers
from tests.e2e.private_servers import PG_USER, PostgresCluster, postgres_bin_dir, require

NEXTOFFER = Path(sys.executable).with_name("nextoffer")
ROOT = Path(__file__).resolve().parents[2]


def test_wal_push_is_idempotent_and_never_overwrites(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    segment = tmp_path / "000000010000000000000003"
    segment.write_bytes(bytes(range(256)) * 64)

    assert wal_push(store, segment, segment.name) is True
    assert wal_push(store, segment, segment.name) is False  # a retry after a crash: fine
    assert [o.key for o in store.list("wal/")] == ["wal/000000010000000000000003.gz"]
    fetched = tmp_path / "pg_wal" / "RECOVERYXLOG"
    fetched.parent.mkdir()
    wal_fetch(store, segment.name, fetched)
    assert fetched.read_bytes() == segment.read_bytes()

    segment.write_bytes(b"other content")
    with pytest.raises(BackupError, match="exists with other content; refusing to overwrite"):
        wal_push(store, segment, segment.name)
    with pytest.raises(NotFoundError):
        wal_fetch(store, "000000010000000000000004", fetched)
    with pytest.raises(ConfigError, match="not a WAL file name"):
        wal_key("../../etc/passwd")
    assert wal_key("00000002.history") == "wal/00000002.history.gz"


def nextoffer_for_postgres() -> str:
    """How the postgres user runs this nextoffer, as a shell command prefix.

    Normally the script in our virtualenv. Where the virtualenv's Python cannot be run by
    another user (a pyenv Python under /root), the system Python of the same version with
    our source and site-packages on PYTHONPATH.
    """
    probe = ["runuser", "-u", PG_USER, "--"]
    if subprocess.run([*probe, str(NEXTOFFER), "--help"], capture_output=True).returncode == 0:
        return shlex.quote(str(NEXTOFFER))
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(version, path="/usr/bin:/bin:/usr/local/bin")
    path = ":".join([str(ROOT / "src"), sysconfig.get_paths()["purelib"]])
    code = "from nextoffer.cli import app; app()"
    if system is not None:
        check = [*probe, "env", f"PYTHONPATH={path}", system, "-c", "import nextoffer.cli"]
        if subprocess.run(check, capture_output=True).returncode == 0:
            return f"PYTHONPATH={shlex.quote(path)} {system} -c {shlex.quote(code)}"
    require(False, f"the {PG_USER} user cannot run {NEXTOFFER} (nor a system {version})")
    raise AssertionError("unreachable")


@pytest.fixture
def checkout_traversable() -> Iterator[None]:
    """Let the postgres user reach this checkout's code while the test runs.

    A checkout in a private folder (`mktemp -d` makes it 0700, as a CI clone may be) cannot
    be entered by the postgres server, which runs our `wal-push` as its archive command;
    only the search bit is added (no listing), and each folder gets its mode back after.
    """
    changed: list[tuple[Path, int]] = []
    for folder in [ROOT, *ROOT.parents]:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
            changed.append((folder, stat.S_IMODE(mode)))
    try:
        yield
    finally:
        for folder, mode in changed:
            folder.chmod(mode)


@pytest.fixture
def clusters() -> Iterator[tuple[PostgresCluster, PostgresCluster]]:
    """A primary cluster, and an empty folder for the one recovered from its backups."""
    bin_dir = postgres_bin_dir()
    primary = PostgresCluster(bin_dir)
    recovered = PostgresCluster(bin_dir)
    try:
        yield primary, recovered
    finally:
        recovered.destroy()
        primary.destroy()


@pytest.fixture
def store_root() -> Iterator[Path]:
    """The backup store: a folder the postgres user writes WAL into (tmp_path is root's)."""
    root = Path(tempfile.mkdtemp(prefix="nextoffer-backups-"))
    shutil.chown(root, PG_USER, PG_USER)
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def sql(conninfo: str, statement: str) -> list[tuple[object, ...]]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        cursor = conn.execute(statement)
        return cursor.fetchall() if cursor.description else []


def wait_for(check: object, what: str, log: PostgresCluster, timeout_s: float = 90) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what} within {timeout_s} s:\n{log.log_tail()}"
        time.sleep(0.2)


@pytest.mark.usefixtures("checkout_traversable")
def test_restore_to_a_time_between_two_base_backups(
    clusters: tuple[PostgresCluster, PostgresCluster], store_root: Path, tmp_path: Path
) -> None:
    primary, recovered = clusters
    backup_url = store_root.as_uri()
    primary.init().start()
    command = nextoffer_for_postgres()
    archive = (
        f"NEXTOFFER_BACKUP_URL={shlex.quote(backup_url)} NEXTOFFER_LOG_LEVEL=WARNING "
        f"{command} backup wal-push %p %f"
    )
    admin = primary.conninfo
    sql(admin, "ALTER SYSTEM SET archive_mode = on")
    sql(admin, f"ALTER SYSTEM SET archive_command = '{archive.replace(chr(39), chr(39) * 2)}'")
    primary.stop()
    primary.start()  # archive_mode needs a restart
    sql(admin, "CREATE DATABASE nextoffer")
    database = f"{admin.replace('dbname=postgres', 'dbname=nextoffer')}"
    settings = Settings(
        database_url=primary.url("nextoffer"),
        backup_url=backup_url,
        wal_archive=True,
        var_dir=tmp_path / "var",
        registry_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifacts_url=f"file://{tmp_path / 'artifacts'}",
        wal_nextoffer_command=command,
    )
    engine = make_engine(settings.database_url)
    migrate.upgrade(engine)
    engine.dispose()
    sql(database, "CREATE TABLE ledger (id integer PRIMARY KEY, note text NOT NULL)")

    def write(ids: range, note: str) -> None:
        for i in ids:  # one commit per row: each has its own commit time in the WAL
            sql(database, f"INSERT INTO ledger VALUES ({i}, '{note}')")

    write(range(1, 6), "before base backup 1")
    first = create_backup(settings)
    assert first.physical is not None
    assert first.physical.files == ["backup_manifest", "base.tar.gz", "pg_wal.tar.gz"]
    assert first.physical.timeline == 1
    assert {t.name: t.rows for t in first.tables}["ledger"] == 5

    write(range(6, 11), "after base backup 1, before T")
    sql(
        database,
        "INSERT INTO customers (customer_id, display_name, age_band, region, signup_date, "
        "contract_type, payment_method) VALUES "
        "('C-VICTIM', 'Vera Vanish', '25-34', 'north', '2024-01-01', 'prepaid', 'voucher'), "
        "('C-OTHER', 'Otto Other', '25-34', 'north', '2024-01-01', 'prepaid', 'voucher')",
    )
    time.sleep(0.3)
    ((target_time,),) = sql(database, "SELECT clock_timestamp()")
    assert isinstance(target_time, datetime)
    time.sleep(0.3)
    write(range(11, 16), "after T")
    platform = build_platform(settings, cache=MemoryCache())
    try:  # erased after T: a restore to T holds the customer, until the ledger is applied
        forget_customers(platform.services, ["C-VICTIM"])
    finally:
        platform.close()
    second = create_backup(settings)
    assert second.physical is not None and second.physical.finished_at > target_time
    # Make sure the WAL holding the rows after T reaches the archive: recovery has to read
    # past T to know where to stop.
    ((segment,),) = sql(database, "SELECT pg_walfile_name(pg_current_wal_lsn())")
    sql(database, "SELECT pg_switch_wal()")
    store = FileStore(store_root)
    wait_for(lambda: store.exists(wal_key(str(segment))), f"{segment} archived", primary)

    with pytest.raises(BackupError, match="no base backup finished before"):
        restore_backup(settings, None, None, False, first.created_at - timedelta(hours=1))

    data_dir = recovered.data_dir
    result = restore_backup(settings, None, data_dir.as_uri(), False, target_time)

    assert result.backup_id == first.backup_id  # the second finished after T
    assert any("nextoffer customers reapply" in note for note in result.notes)
    assert result.data_dir == str(data_dir)
    assert (data_dir / "recovery.signal").exists()
    conf = (data_dir / "postgresql.auto.conf").read_text()
    assert "recovery_target_action = 'promote'" in conf
    assert "backup wal-fetch %f %p" in conf
    with pytest.raises(BackupError, match="is not empty; pass --force"):
        restore_backup(settings, None, data_dir.as_uri(), False, target_time)

    subprocess.run(["chown", "-R", f"{PG_USER}:{PG_USER}", str(recovered.root)], check=True)
    recovered.start()
    recovered_db = recovered.conninfo.replace("dbname=postgres", "dbname=nextoffer")
    wait_for(
        lambda: sql(recovered_db, "SELECT pg_is_in_recovery()") == [(False,)],
        "recovery to the target time and promotion",
        recovered,
    )
    rows = sql(recovered_db, "SELECT id, note FROM ledger ORDER BY id")
    assert [row[0] for row in rows] == list(range(1, 11))
    assert {row[1] for row in rows} == {"before base backup 1", "after base backup 1, before T"}
    # A new timeline began where recovery stopped; the primary still has every row.
    ((wal_file,),) = sql(recovered_db, "SELECT pg_walfile_name(pg_current_wal_lsn())")
    assert str(wal_file).startswith("00000002")
    assert sql(database, "SELECT count(*) FROM ledger") == [(15,)]
    assert "recovery stopping before commit" in recovered.log_tail(20_000)

    # What serving's start-up, `nextoffer customers reapply` and the ETL each run first.
    customers = "SELECT customer_id FROM customers ORDER BY customer_id"
    assert sql(recovered_db, customers) == [("C-OTHER",), ("C-VICTIM",)]
    recovered_engine = make_engine(recovered.url("nextoffer"))
    try:
        assert reapply_erasures(recovered_engine, settings).customers == 1
    finally:
        recovered_engine.dispose()
    assert sql(recovered_db, customers) == [("C-OTHER",)]
    assert sql(recovered_db, "SELECT count(*) FROM erasure_ledger") == [(1,)]
