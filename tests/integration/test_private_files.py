"""Files under VAR_DIR holding personal data or secrets are 0600, in 0700 folders."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from nextoffer.config import Settings
from nextoffer.ops.sqlitefiles import gzip_file, online_copy
from nextoffer.pipelines.etl import run_ingest
from nextoffer.registry.urls import private_sqlite_file
from nextoffer.serving.spool import Spool
from nextoffer.serving.tokens import resolve_jwt_secret, resolve_privacy_key
from nextoffer.storage.files import FileStore
from nextoffer.store.engine import make_engine
from nextoffer.store.migrate import upgrade
from tests.helpers import header, write_csv


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def _permissive_umask() -> Iterator[None]:
    # The usual umask (022) would make files 0644: privacy must not rely on a strict one.
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def test_database_registry_quarantine_spool_backups_and_secrets_are_private(
    tmp_path: Path,
) -> None:
    var = tmp_path / "var"
    database = var / "nextoffer.db"
    engine = make_engine(f"sqlite:///{database}")
    try:
        upgrade(engine)
        with engine.connect() as conn:  # WAL mode: -wal and -shm exist while connected
            conn.execute(text("SELECT count(*) FROM customers"))
            sides = [Path(f"{database}{s}") for s in ("-wal", "-shm")]
            assert all(side.exists() for side in sides)
            assert {p.name: mode(p) for p in [database, *sides]} == {
                "nextoffer.db": 0o600,
                "nextoffer.db-wal": 0o600,
                "nextoffer.db-shm": 0o600,
            }
        assert mode(var) == 0o700

        # The registry's SQLite file, made before MLflow opens it.
        private_sqlite_file(f"sqlite:///{tmp_path / 'registry' / 'mlflow.db'}")
        assert mode(tmp_path / "registry" / "mlflow.db") == 0o600
        assert mode(tmp_path / "registry") == 0o700

        # Quarantine: rejected rows hold customers' data.
        settings = Settings(database_url=f"sqlite:///{database}", var_dir=var)
        columns = header("customers")
        bad = ["" for _ in columns]  # no customer id: quarantined
        write_csv(tmp_path / "in" / "customers.csv", columns, [bad])
        run_ingest(engine, settings, tmp_path / "in")
        [quarantined] = list(settings.quarantine_dir.iterdir())
        assert mode(settings.quarantine_dir) == 0o700 and mode(quarantined) == 0o600
    finally:
        engine.dispose()

    # Spooled events name customers.
    spool = Spool(var / "spool")
    spool.append(['{"customer_id": "C1"}'])
    assert mode(var / "spool") == 0o700 and mode(spool.file) == 0o600

    # Backups: the copy, its gzip, and the store's folders and files.
    copy = tmp_path / "work" / "copy.db"
    copy.parent.mkdir()
    online_copy(database, copy)
    gzip_file(copy, tmp_path / "work" / "copy.db.gz")
    assert mode(copy) == 0o600 and mode(tmp_path / "work" / "copy.db.gz") == 0o600
    store = FileStore(var / "backups")
    store.upload(tmp_path / "work" / "copy.db.gz", "b-1/db/copy.db.gz")
    for folder in (var / "backups", var / "backups" / "b-1", var / "backups" / "b-1" / "db"):
        assert mode(folder) == 0o700, folder
    assert mode(var / "backups" / "b-1" / "db" / "copy.db.gz") == 0o600

    # Generated secrets.
    resolve_jwt_secret(settings)
    resolve_privacy_key(settings)
    assert mode(var / "secrets") == 0o700
    assert {p.name: mode(p) for p in (var / "secrets").iterdir()} == {
        "jwt_secret": 0o600,
        "privacy_key": 0o600,
    }
