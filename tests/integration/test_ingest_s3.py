"""`nextoffer ingest s3://...` against a local S3 (moto's server): same rows, quarantine, ledger."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from sqlalchemy import func, select

from nextoffer.config import Settings
from nextoffer.ingest.sources import file_sha256
from nextoffer.pipelines.etl import run_ingest
from nextoffer.store.engine import make_engine
from nextoffer.store.ledger import list_entries
from nextoffer.store.migrate import upgrade
from nextoffer.store.schema import DATA_TABLES, QuarantinedRow
from tests.helpers import dump_all, quarantine_csv_rows, write_world

BIN = Path(sys.executable).parent
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free local port, empty for each test."""
    server = BIN / "moto_server"
    if not server.exists():
        message = f"{server} is missing (moto[server] is a dev dependency)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    port = free_port()
    process = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def s3(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )


def nextoffer(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "nextoffer"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def cli_env(database_url: str, var_dir: Path, endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEXTOFFER_", "AWS_"))}
    env.update(CREDENTIALS)
    env.update(
        NEXTOFFER_DATABASE_URL=database_url,
        NEXTOFFER_VAR_DIR=str(var_dir),
        NEXTOFFER_S3_ENDPOINT_URL=endpoint,
        NEXTOFFER_DB_WAIT_TIMEOUT_S="5",
        NEXTOFFER_LOG_JSON="false",
        COLUMNS="200",
    )
    return env


SUMMARY = re.compile(
    r"ingest: (?P<read>[\d,]+) rows read · (?P<loaded>[\d,]+) loaded "
    r"\((?P<changed>[\d,]+) new or changed\) · (?P<quarantined>[\d,]+) quarantined"
)


def summary(out: str) -> dict[str, int]:
    found = SUMMARY.search(out)
    assert found is not None, out
    return {k: int(v.replace(",", "")) for k, v in found.groupdict().items()}


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def without_source(dumped: dict[str, list[tuple[Any, ...]]]) -> dict[str, Any]:
    """Tables to compare between a local and an S3 load: quarantine rows less their source."""
    return {
        **{name: dumped[name] for name in DATA_TABLES},
        "quarantine": sorted(row[:1] + row[2:] for row in dumped["quarantine"]),
    }


def test_ingest_from_s3_matches_the_local_folder(s3_endpoint: str, tmp_path: Path) -> None:
    world = write_world(tmp_path / "world", customers=25, bad_every=9)
    client = s3(s3_endpoint)
    client.create_bucket(Bucket="datasets")
    for path in sorted(world.root.glob("*.csv")):
        client.upload_file(str(path), "datasets", f"incoming/{path.name}")
    # Neither an import file nor directly under the prefix: both are left alone.
    client.put_object(Bucket="datasets", Key="incoming/notes.txt", Body=b"hello")
    client.put_object(Bucket="datasets", Key="incoming/old/customers.csv", Body=b"junk")

    # The database is not what is under test here (test_nightly_etl.py runs both backends).
    local_url = f"sqlite:///{tmp_path / 'local.db'}"
    remote_url = f"sqlite:///{tmp_path / 'remote.db'}"
    for url in (local_url, remote_url):
        upgrade(make_engine(url))
    remote_env = cli_env(remote_url, tmp_path / "var-s3", s3_endpoint)

    local = run_ingest(
        make_engine(local_url),
        Settings(database_url=local_url, var_dir=tmp_path / "var-local"),
        world.root,
    )
    remote = nextoffer("ingest", "s3://datasets/incoming", env=remote_env)
    assert remote.returncode == 0, remote.stderr
    counts = summary(remote.stdout)
    assert counts == {
        "read": local.rows_read,
        "loaded": local.rows_loaded,
        "changed": local.rows_changed,
        "quarantined": local.rows_quarantined,
    }
    assert counts["quarantined"] == sum(world.bad.values()) > 0
    assert counts["loaded"] == sum(world.rows.values()) - sum(world.bad.values())

    remote_engine = make_engine(remote_url)
    loaded = dump_all(remote_engine)
    assert without_source(loaded) == without_source(dump_all(make_engine(local_url)))

    # Quarantined rows name the S3 object, and the quarantine CSVs are written as for files.
    with remote_engine.connect() as conn:
        sources = set(conn.execute(select(QuarantinedRow.source).distinct()).scalars())
    assert sources == {
        "s3://datasets/incoming/events.csv",
        "s3://datasets/incoming/transactions.csv",
    }
    names = {name for name, *_ in quarantine_csv_rows(tmp_path / "var-s3" / "quarantine")}
    assert names == {
        f"{e}.{e}.csv.{file_sha256(world.root / f'{e}.csv')[:12]}.csv"
        for e in ("transactions", "events")
    }

    # The ledger keys each object by URI, content hash and ETag.
    ledger = {e.uri: e for e in list_entries(remote_engine)}
    assert set(ledger) == {f"s3://datasets/incoming/{e}.csv" for e in world.rows}
    for uri, entry in ledger.items():
        head = client.head_object(Bucket="datasets", Key=uri.removeprefix("s3://datasets/"))
        assert entry.sha256 == file_sha256(world.root / Path(uri).name)
        assert entry.etag == head["ETag"].strip('"')
        assert entry.size == head["ContentLength"]
    # Downloads are removed once loaded.
    assert list((tmp_path / "var-s3" / "staging").iterdir()) == []

    # Idempotent: loading again changes nothing; with --new-only nothing is even downloaded.
    again = nextoffer("ingest", "s3://datasets/incoming", env=remote_env)
    assert again.returncode == 0, again.stderr
    assert summary(again.stdout)["changed"] == 0
    assert dump_all(remote_engine) == loaded
    new_only = nextoffer("ingest", "s3://datasets/incoming", "--new-only", env=remote_env)
    assert new_only.returncode == 0, new_only.stderr
    assert "ingest: no new files · 6 files already loaded" in new_only.stdout
    with remote_engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(QuarantinedRow)).scalar_one()
    assert stored == counts["quarantined"]

    # One object of the prefix is replaced: only it is downloaded and loaded again.
    changed = world.root / "churn_labels.csv"
    text = changed.read_text(encoding="utf-8")
    changed.write_text(text.replace("2025-01-01,false,", "2025-01-01,true,2025-01-05", 1))
    client.upload_file(str(changed), "datasets", "incoming/churn_labels.csv")
    update = nextoffer("ingest", "s3://datasets/incoming", "--new-only", env=remote_env)
    assert update.returncode == 0, update.stderr
    assert summary(update.stdout) == {
        "read": world.rows["churn_labels"],
        "loaded": world.rows["churn_labels"],
        "changed": 1,
        "quarantined": 0,
    }
    assert "5 files already loaded" in update.stdout

    # A URL may name one object, like a path may name one file.
    single = nextoffer(
        "ingest", "s3://datasets/incoming/products.csv", "--new-only", env=remote_env
    )
    assert single.returncode == 0, single.stderr
    assert "ingest: no new files · 1 files already loaded" in single.stdout

    # The nightly ETL then finds nothing new (and, with nothing new, needs no model registry).
    remote_env["NEXTOFFER_INGEST_SOURCE"] = "s3://datasets/incoming"
    night = nextoffer("etl", "nightly", env=remote_env)
    assert night.returncode == 0, night.stderr
    assert night.stdout.startswith(
        "etl: nothing new in s3://datasets/incoming (6 files already loaded)"
    )
    listed = nextoffer("etl", "ledger", "--json", env=remote_env)
    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)
    assert len(entries) == 7
    assert entries[0]["uri"] == "s3://datasets/incoming/churn_labels.csv"  # newest first
    assert entries[0]["sha256"] == file_sha256(changed)
    assert entries[0]["rows_loaded"] == world.rows["churn_labels"]


def test_s3_errors_are_one_line(s3_endpoint: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(make_engine(url))
    env = cli_env(url, tmp_path / "var", s3_endpoint)

    missing = nextoffer("ingest", "s3://no-such-bucket/incoming", env=env)
    assert missing.returncode == 1
    # The last line: the progress bar may have started on stderr before the listing failed.
    assert last_line(missing.stderr) == "error: s3://no-such-bucket/incoming: no such bucket"

    s3(s3_endpoint).create_bucket(Bucket="empty")
    empty = nextoffer("ingest", "s3://empty/incoming", env=env)
    assert empty.returncode == 1
    assert last_line(empty.stderr).startswith("error: s3://empty/incoming: no import files found")

    env["NEXTOFFER_S3_ENDPOINT_URL"] = f"http://127.0.0.1:{free_port()}"
    down = nextoffer("ingest", "s3://datasets/incoming", env=env)
    assert down.returncode == 1
    assert last_line(down.stderr).startswith("error: NEXTOFFER_S3_ENDPOINT_URL: cannot reach")
    assert "Traceback" not in down.stderr
