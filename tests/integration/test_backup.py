"""Backups end to end: round trips on SQLite and PostgreSQL, to file:// and to S3 (moto).

Each round trip creates a backup, loses the data, restores it and compares every data
table row by row with what was there before; verify must catch a corrupt file and a
manifest that disagrees with the data; restore must refuse to overwrite without --force;
the registry's champion must come back with its model files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from sqlalchemy import Engine, select, text
from typer.testing import CliRunner

from nextoffer.cli import app
from nextoffer.config import Settings
from nextoffer.domain.errors import BackendUnavailableError, ConfigError, NotFoundError
from nextoffer.jobs.calls import create_backup, prune_backups, verify_backup
from nextoffer.ops import tablestats
from nextoffer.ops.backup import list_backups
from nextoffer.ops.manifest import BackupError, Manifest, base_key, file_sha256
from nextoffer.ops.restore import restore_backup
from nextoffer.pipelines.etl import run_ingest
from nextoffer.storage import FileStore, ObjectStore, S3Store, open_prefix
from nextoffer.store import migrate
from nextoffer.store.engine import make_engine
from nextoffer.store.schema import JobRun
from tests.conftest import IN_CI, port_open
from tests.e2e.server import free_port
from tests.helpers import dump_all, write_world

# MLflow's own SQLAlchemy models use a deprecated loader; nothing we can act on.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy")

MOTO_SERVER = Path(sys.executable).with_name("moto_server")
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """A moto S3 server on a free port, as a subprocess, for the whole module."""
    if not MOTO_SERVER.exists():
        message = f"{MOTO_SERVER} is not installed (pip install 'moto[server]')"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    port = free_port()
    process = subprocess.Popen(
        [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", port):
            assert process.poll() is None, "moto_server exited"
            assert time.monotonic() < deadline, "moto_server did not listen within 30 s"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    # A developer's own AWS profile or endpoint must not leak into the test.
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture(scope="module")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated MLflow database: MLflow's migrations take seconds per database."""
    from nextoffer.registry.mlflow_registry import ModelRegistry

    folder = tmp_path_factory.mktemp("mlflow-template")
    registry = ModelRegistry(f"sqlite:///{folder / 'mlflow.db'}", f"file://{folder}/artifacts")
    assert registry.champion("offers") is None  # creates the registry tables too
    return folder / "mlflow.db"


def new_bucket(endpoint: str) -> str:
    name = f"nextoffer-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["file", "s3"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(backup URL, S3 endpoint or "") for each kind of store."""
    if request.param == "file":
        return f"file://{tmp_path / 'backups'}", ""
    endpoint = str(request.getfixturevalue("moto_endpoint"))
    request.getfixturevalue("s3_env")
    return f"s3://{new_bucket(endpoint)}/nextoffer/backups", endpoint


def make_settings(
    database_url: str, backup_url: str, tmp_path: Path, endpoint: str = "", **extra: object
) -> Settings:
    return Settings(
        database_url=database_url,
        backup_url=backup_url,
        s3_endpoint_url=endpoint,
        var_dir=tmp_path / "var",
        registry_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifacts_url=f"file://{tmp_path / 'artifacts'}",
        **extra,  # type: ignore[arg-type]
    )


def load_world(engine: Engine, settings: Settings, tmp_path: Path) -> None:
    """Migrate and ingest a small world: every data table gets rows of every column type."""
    migrate.upgrade(engine)
    world = write_world(tmp_path / "world", customers=20, bad_every=7)
    run_ingest(engine, settings, world.root)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def lose_everything(engine: Engine, database_url: str) -> None:
    """What a disaster leaves: no tables at all (SQLite: no file)."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    else:
        engine.dispose()
        path = Path(engine.url.database or "")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    engine.dispose()


def current_stats(engine: Engine) -> list[tablestats.TableStat]:
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn, conn.begin():
            return tablestats.postgres_stats(conn)
    return tablestats.sqlite_stats(Path(engine.url.database or ""))


def store_of(settings: Settings) -> ObjectStore:
    return open_prefix(settings.backup_url, endpoint_url=settings.s3_endpoint_url)


def runs(engine: Engine, job: str) -> list[JobRun]:
    with engine.connect() as conn:
        rows = conn.execute(select(JobRun).where(JobRun.job == job)).all()
    return [JobRun(**row._mapping) for row in rows]


# ---------------------------------------------------------------- round trips


def test_round_trip(
    database_url: str, engine: Engine, store_url: tuple[str, str], tmp_path: Path
) -> None:
    settings = make_settings(database_url, store_url[0], tmp_path, store_url[1])
    load_world(engine, settings, tmp_path)
    before = dump_all(engine)
    assert sum(len(rows) for rows in before.values()) > 200

    manifest = create_backup(settings)

    # The manifest describes what is really there.
    assert manifest.engine == engine.dialect.name
    assert manifest.schema_version == migrate.head_revision()
    tables = {t.name: t for t in manifest.tables}
    for name, rows in before.items():
        assert tables[name].rows == len(rows), name
    assert tables["alembic_version"].rows == 1
    db_file = "db.dump" if manifest.engine == "postgresql" else "db.sqlite.gz"
    store = store_of(settings)
    stored = {o.key: o.size for o in store.list(base_key(manifest.backup_id))}
    assert set(stored) == {
        base_key(manifest.backup_id, name) for name in (db_file, "manifest.json")
    }
    fetched = tmp_path / "fetched"
    store.download(base_key(manifest.backup_id, db_file), fetched)
    assert manifest.file(db_file).sha256 == file_sha256(fetched)
    assert manifest.file(db_file).size == stored[base_key(manifest.backup_id, db_file)]
    assert manifest.registry.kind == "none" and "no registry database yet" in manifest.registry.note
    on_disk = json.loads(store.get_bytes(base_key(manifest.backup_id, "manifest.json")))
    assert on_disk["tables"] == [t.model_dump() for t in manifest.tables]
    assert [m.backup_id for m in list_backups(settings)] == [manifest.backup_id]
    (backup_run,) = runs(engine, "backup")
    assert backup_run.status == "succeeded"
    assert backup_run.counts["rows"] == manifest.rows
    assert backup_run.counts["bytes"] == manifest.size

    lose_everything(engine, database_url)
    result = restore_backup(settings, None, None, False, None)

    assert result.backup_id == manifest.backup_id
    assert result.rows == manifest.rows and result.tables == len(manifest.tables)
    assert dump_all(engine) == before
    # Checksums and counts recomputed here equal the manifest's, except job_runs, where the
    # restore closed the backup's own run and recorded itself.
    now = {t.name: t for t in current_stats(engine)}
    assert {n: t for n, t in now.items() if n != "job_runs"} == {
        n: t for n, t in tables.items() if n != "job_runs"
    }
    (restored_backup_run,) = runs(engine, "backup")
    assert restored_backup_run.status == "succeeded"  # it was "running" in the snapshot
    (restore_run,) = runs(engine, "backup_restore")
    assert restore_run.counts["backup_id"] == manifest.backup_id

    verified = verify_backup(settings, manifest.backup_id)
    assert verified.ok, verified.problems
    assert verified.tables == len(manifest.tables) and verified.rows == manifest.rows
    assert runs(engine, "backup_verify")[0].status == "succeeded"


def test_restore_refuses_a_database_with_tables_without_force(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    settings = make_settings(database_url, f"file://{tmp_path / 'backups'}", tmp_path)
    load_world(engine, settings, tmp_path)
    before = dump_all(engine)
    manifest = create_backup(settings)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM events"))
        conn.execute(text("UPDATE products SET price = price + 1"))
    changed = dump_all(engine)

    with pytest.raises(BackupError, match=r"already holds \d+ tables; pass --force"):
        restore_backup(settings, manifest.backup_id, None, False, None)
    assert dump_all(engine) == changed  # untouched

    restore_backup(settings, manifest.backup_id, None, True, None)
    assert dump_all(engine) == before


def test_restore_into_another_database_leaves_the_live_one_alone(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    settings = make_settings(database_url, f"file://{tmp_path / 'backups'}", tmp_path)
    load_world(engine, settings, tmp_path)
    before = dump_all(engine)
    create_backup(settings)
    if engine.dialect.name == "postgresql":
        target = engine.url.set(database=f"{engine.url.database}_copy")
    else:
        target = engine.url.set(database=str(tmp_path / "copy" / "restored.db"))
    target_url = target.render_as_string(hide_password=False)

    result = restore_backup(settings, None, target_url, False, None)
    copy = make_engine(target_url)
    try:
        assert dump_all(copy) == before
        assert result.target.endswith("copy") or result.target.endswith("restored.db")
    finally:
        copy.dispose()
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text(f'DROP DATABASE "{target.database}" WITH (FORCE)'))
    assert runs(engine, "backup_restore") == []  # recorded in the restored database


def test_clear_errors_before_any_work(postgres_url: str, tmp_path: Path) -> None:
    settings = make_settings(postgres_url, f"file://{tmp_path / 'backups'}", tmp_path)
    with pytest.raises(
        ConfigError, match="has no nextoffer tables yet; run `nextoffer db upgrade`"
    ):
        create_backup(settings)
    with pytest.raises(NotFoundError, match=r"no backups in .* yet"):
        restore_backup(settings, None, None, False, None)
    with pytest.raises(BackupError, match="is not a backup id"):
        verify_backup(settings, "yesterday")
    migrate.upgrade(make_engine(postgres_url))
    archiving = settings.model_copy(update={"wal_archive": True})
    with pytest.raises(ConfigError, match="archive_mode is off"):
        create_backup(archiving)  # the shared test server does not archive WAL
    assert list_backups(settings) == []
    sqlite_backup = make_settings(f"sqlite:///{tmp_path / 'x.db'}", settings.backup_url, tmp_path)
    migrate.upgrade(make_engine(sqlite_backup.database_url))
    create_backup(sqlite_backup)
    with pytest.raises(ConfigError, match="is of a sqlite database; it cannot be restored into"):
        restore_backup(settings, None, None, True, None)


# ---------------------------------------------------------------- verify


def stored_path(settings: Settings, manifest: Manifest, name: str) -> Path:
    store = store_of(settings)
    assert isinstance(store, FileStore)
    return store.root / base_key(manifest.backup_id, name)


def test_verify_and_restore_reject_a_corrupt_file(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    settings = make_settings(database_url, f"file://{tmp_path / 'backups'}", tmp_path)
    load_world(engine, settings, tmp_path)
    manifest = create_backup(settings)
    db_file = "db.dump" if manifest.engine == "postgresql" else "db.sqlite.gz"
    path = stored_path(settings, manifest, db_file)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: same size, other content
    path.write_bytes(bytes(data))

    result = verify_backup(settings, None)

    assert not result.ok
    assert len(result.problems) == 1
    assert f"{db_file} does not match its SHA-256" in result.problems[0]
    (run,) = runs(engine, "backup_verify")
    assert run.status == "failed" and "SHA-256" in (run.message or "")
    with pytest.raises(BackupError, match="does not match its SHA-256"):
        restore_backup(settings, None, None, True, None)


def test_verify_reports_counts_and_checksums_that_differ_from_the_manifest(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    settings = make_settings(database_url, f"file://{tmp_path / 'backups'}", tmp_path)
    load_world(engine, settings, tmp_path)
    manifest = create_backup(settings)
    customers = next(t.rows for t in manifest.tables if t.name == "customers")
    path = stored_path(settings, manifest, "manifest.json")
    edited = json.loads(path.read_text())
    for table in edited["tables"]:
        if table["name"] == "customers":
            table["rows"] += 1
        if table["name"] == "products":
            table["checksum"] = "0" * 32
    path.write_text(json.dumps(edited))
    scratch_before = scratch_databases(engine)

    result = verify_backup(settings, manifest.backup_id)

    assert not result.ok
    assert result.problems == [
        f"customers: {customers:,} rows restored, {customers + 1:,} at backup time",
        "products: content checksum differs from the one at backup time",
    ]
    assert scratch_databases(engine) == scratch_before  # the scratch database was dropped
    before = dump_all(engine)
    with pytest.raises(BackupError, match="differs from backup"):
        restore_backup(settings, None, None, True, None)
    assert dump_all(engine) == before


def scratch_databases(engine: Engine) -> set[str]:
    if engine.dialect.name != "postgresql":
        return set()
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT datname FROM pg_database WHERE datname LIKE 'nextoffer_verify_%'")
        )
        return {row[0] for row in rows}


# ---------------------------------------------------------------- registry


def test_registry_and_champion_come_back_with_their_model_files(
    sqlite_url: str, store_url: tuple[str, str], tmp_path: Path, mlflow_template: Path
) -> None:
    from nextoffer.registry.mlflow_registry import ModelRegistry
    from tests.integration.test_registry import file_bytes, make_model

    settings = make_settings(
        sqlite_url, store_url[0], tmp_path, store_url[1], keep_model_versions=1
    )
    shutil.copy(mlflow_template, tmp_path / "mlflow.db")
    engine = make_engine(sqlite_url)
    migrate.upgrade(engine)
    # Keeps five versions' files itself; the backup keeps one (and the champions).
    registry = ModelRegistry(settings.registry_uri, settings.artifacts_url)
    models: dict[tuple[str, int], dict[str, bytes]] = {}

    def register(kind: str, value: float, metric: str) -> int:
        model = make_model(tmp_path / f"model-{len(models)}", len(models))
        decision = registry.register(
            kind, model, params={}, metrics={metric: value}, primary_metric=metric
        )
        models[(kind, decision.version)] = file_bytes(model)
        return decision.version

    assert register("offers", 0.40, "ndcg@10") == 1  # champion
    assert register("offers", 0.30, "ndcg@10") == 2  # worse: not promoted
    assert register("churn", 0.80, "roc_auc") == 1

    manifest = create_backup(settings)

    assert manifest.champions == {"offers": 1, "churn": 1}
    # keep_model_versions=1: the newest version of each model, plus each champion.
    assert {(v.kind, v.version, v.champion) for v in manifest.artifacts} == {
        ("offers", 2, False),
        ("offers", 1, True),
        ("churn", 1, True),
    }
    assert manifest.registry.kind == "sqlite"
    assert all(v.files == 4 for v in manifest.artifacts)

    assert register("offers", 0.50, "ndcg@10") == 3  # after the backup: the new champion
    assert registry.champion("offers").version == 3  # type: ignore[union-attr]
    shutil.rmtree(tmp_path / "artifacts")  # and every model file is lost

    lose_everything(engine, sqlite_url)  # the database is gone, the registry is not
    with pytest.raises(BackupError, match=r"the registry database .*mlflow.db holds \d+ tables"):
        restore_backup(settings, None, None, False, None)
    result = restore_backup(settings, None, None, True, None)

    assert result.registry_restored
    assert result.champions == {"offers": 1, "churn": 1}
    assert result.artifact_files == 12
    restored = ModelRegistry.from_settings(settings)
    assert restored.champion("offers").version == 1  # type: ignore[union-attr]
    assert [v.version for v in restored.versions("offers")] == [2, 1]
    for kind, version in (("offers", 1), ("offers", 2), ("churn", 1)):
        folder = restored.download(kind, version, tmp_path / f"check-{kind}-{version}")
        assert file_bytes(folder) == models[(kind, version)]
    assert verify_backup(settings, None).ok
    # Serving's table and file copies follow the restored registry (not the backup's table).
    from nextoffer.registry.serving_mirror import ServingFiles
    from nextoffer.store.serving_champions import read_serving_champions

    served = read_serving_champions(make_engine(sqlite_url))
    assert {kind: row.version for kind, row in served.items()} == {"offers": 1, "churn": 1}
    assert ServingFiles(settings.artifacts_url).has("offers", 2)


def test_restore_without_registry_leaves_the_registry_alone(
    sqlite_url: str, tmp_path: Path, mlflow_template: Path
) -> None:
    from nextoffer.registry.mlflow_registry import ModelRegistry
    from tests.integration.test_registry import make_model

    settings = make_settings(sqlite_url, f"file://{tmp_path / 'backups'}", tmp_path)
    shutil.copy(mlflow_template, tmp_path / "mlflow.db")
    engine = make_engine(sqlite_url)
    migrate.upgrade(engine)
    registry = ModelRegistry.from_settings(settings)
    model = make_model(tmp_path / "model", 1)
    registry.register("offers", model, params={}, metrics={"m": 0.1}, primary_metric="m")
    create_backup(settings)
    registry.register("offers", model, params={}, metrics={"m": 0.9}, primary_metric="m")

    result = restore_backup(settings, None, None, True, None, registry=False)

    assert not result.registry_restored
    assert ModelRegistry.from_settings(settings).champion("offers").version == 2  # type: ignore[union-attr]


# ---------------------------------------------------------------- prune, store, CLI


def test_prune_deletes_what_retention_drops_and_incomplete_backups(
    sqlite_url: str, tmp_path: Path
) -> None:
    settings = make_settings(sqlite_url, f"file://{tmp_path / 'backups'}", tmp_path)
    engine = make_engine(sqlite_url)
    migrate.upgrade(engine)
    first = create_backup(settings)
    second = create_backup(settings)
    store = store_of(settings)
    # A backup that died before its manifest two days ago, and one in progress now.
    dead = "20260101T000000.000Z"
    store.put_bytes(b"partial", base_key(dead, "db.sqlite.gz"))
    in_progress = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + ".999Z"
    store.put_bytes(b"partial", base_key(in_progress, "db.sqlite.gz"))
    later = datetime.now(UTC) + timedelta(days=2 * 365)

    dry = prune_backups(settings, later, dry_run=True)
    assert dry.deleted == [first.backup_id] and dry.kept == [second.backup_id]
    assert [m.backup_id for m in list_backups(settings)] == [first.backup_id, second.backup_id]
    assert runs(engine, "backup_prune") == []

    result = prune_backups(settings, later)

    assert result.deleted == [first.backup_id]
    assert result.incomplete_deleted == [dead, in_progress]  # both a day old by `later`
    assert [m.backup_id for m in list_backups(settings)] == [second.backup_id]
    assert {o.key.split("/")[1] for o in store.list("base/")} == {second.backup_id}
    (run,) = runs(engine, "backup_prune")
    assert run.counts["deleted"] == 1 and run.counts["kept"] == 1

    now_result = prune_backups(settings, datetime.now(UTC))
    assert now_result.deleted == [] and now_result.kept == [second.backup_id]


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_object_store_contract(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if kind == "file":
        store = open_prefix(f"file://{tmp_path / 'store'}")
    else:
        endpoint = str(request.getfixturevalue("moto_endpoint"))
        request.getfixturevalue("s3_env")
        store = open_prefix(f"s3://{new_bucket(endpoint)}/some/prefix", endpoint_url=endpoint)
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(3000))

    store.upload(source, "a/b/one.bin")
    store.put_bytes(b"two", "a/two.txt")
    store.put_bytes(b"three", "ab/three.txt")

    assert [(o.key, o.size) for o in store.list("a/")] == [("a/b/one.bin", 3000), ("a/two.txt", 3)]
    assert [o.key for o in store.list("a")] == ["a/b/one.bin", "a/two.txt", "ab/three.txt"]
    assert all(o.etag for o in store.list(""))
    assert store.exists("a/two.txt") and not store.exists("a/none.txt")
    target = tmp_path / "back.bin"
    store.download("a/b/one.bin", target)
    assert target.read_bytes() == source.read_bytes()
    with pytest.raises(NotFoundError, match=r"none\.txt: not found"):
        store.download("a/none.txt", tmp_path / "none")
    assert not (tmp_path / "none").exists()
    assert store.delete(["a/b/one.bin", "a/absent"]) == 2
    assert [o.key for o in store.list("")] == ["a/two.txt", "ab/three.txt"]
    with pytest.raises(ValueError, match="invalid object key"):
        store.put_bytes(b"x", "../escape")


def test_object_store_errors_are_one_clear_line(
    moto_endpoint: str, s3_env: None, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="unsupported URL scheme 'ftp'"):
        open_prefix("ftp://host/x")
    missing = open_prefix("s3://no-such-bucket-here/x", endpoint_url=moto_endpoint)
    with pytest.raises(ConfigError, match="bucket 'no-such-bucket-here' does not exist"):
        missing.list("")
    closed = open_prefix("s3://b/x", endpoint_url=f"http://127.0.0.1:{free_port()}")
    assert isinstance(closed, S3Store)
    # One attempt: the store's own client retries with backoff, seconds this test need not wait.
    closed._s3 = boto3.client(
        "s3", endpoint_url=closed.endpoint_url, config=Config(retries={"max_attempts": 1})
    )
    with pytest.raises(BackendUnavailableError, match="NEXTOFFER_BACKUP_URL: cannot reach"):
        closed.exists("k")


def test_cli_create_list_verify_and_refuse(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(sqlite_url, f"file://{tmp_path / 'backups'}", tmp_path)
    engine = make_engine(sqlite_url)
    migrate.upgrade(engine)
    env = {
        "NEXTOFFER_DATABASE_URL": sqlite_url,
        "NEXTOFFER_BACKUP_URL": settings.backup_url,
        "NEXTOFFER_VAR_DIR": str(settings.var_dir),
        "NEXTOFFER_REGISTRY_URI": settings.registry_uri,
        "NEXTOFFER_ARTIFACTS_URL": settings.artifacts_url,
        "NEXTOFFER_LOG_LEVEL": "WARNING",
        "COLUMNS": "200",
    }
    runner = CliRunner()

    created = runner.invoke(app, ["backup", "create"], env=env)
    assert created.exit_code == 0, created.output
    (manifest,) = list_backups(settings)
    assert f"backup {manifest.backup_id}: sqlite · " in created.stdout
    listed = runner.invoke(app, ["backup", "list"], env=env)
    assert manifest.backup_id in listed.stdout
    verified = runner.invoke(app, ["backup", "verify"], env=env)
    assert verified.exit_code == 0 and "OK" in verified.stdout
    refused = runner.invoke(app, ["backup", "restore"], env=env)
    assert refused.exit_code == 1
    assert "already holds" in refused.output and "Traceback" not in refused.output
    bad = runner.invoke(app, ["backup", "restore", "--to-time", "2026-01-01T00:00"], env=env)
    assert bad.exit_code == 1 and "give a time zone" in bad.output
