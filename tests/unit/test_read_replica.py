"""The read engine: the replica when it answers, the primary while it does not (on SQLite files)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from nextoffer.store import replica as replica_module
from nextoffer.store.engine import make_engine
from nextoffer.store.replica import ReadReplica


def _database(path: Path, name: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (name TEXT)")
        conn.execute("INSERT INTO t VALUES (?)", (name,))


def _read(replica: ReadReplica) -> str:
    with replica.engine.connect() as conn:
        return str(conn.execute(text("SELECT name FROM t")).scalar_one())


def test_reads_fall_back_to_the_primary_and_return_to_the_replica(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(replica_module, "RETRY_S", 0.05)
    _database(tmp_path / "primary.db", "primary")
    primary = make_engine(f"sqlite:///{tmp_path / 'primary.db'}")
    standby = tmp_path / "standby.db"
    # URI mode rw: a missing file is refused (not created), as a stopped replica refuses connections.
    replica = ReadReplica(f"sqlite:///file:{standby}?mode=rw&uri=true", primary)
    try:
        assert _read(replica) == "primary"
        assert replica.fallbacks == 1 and replica.down_since is not None
        assert "reads go to the primary" in caplog.text
        health = replica.health()
        assert not health.ok and health.detail.startswith("down"), health

        _database(standby, "standby")
        time.sleep(0.1)  # past RETRY_S: the pooled primary connection is dropped, not used
        assert _read(replica) == "standby"
        assert replica.down_since is None
        assert "is back" in caplog.text
    finally:
        replica.dispose()
        primary.dispose()


def test_a_bad_read_url_names_its_setting() -> None:
    with pytest.raises(Exception, match="NEXTOFFER_DATABASE_READ_URL"):
        ReadReplica("mysql://somewhere/db", make_engine("sqlite://"))
