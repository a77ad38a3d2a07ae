"""Ingest speed at 1 M transactions on SQLite and PostgreSQL, each against its bare limit.

PostgreSQL's baseline is a bare `psql \\copy`: the same file copied by psql into a table
with the same column types and no keys or indexes. SQLite's is a bare `executemany`: the
same file read by the csv module and inserted by one `executemany`, in one transaction,
into an empty table with the same column types and no keys or indexes, on a connection
with the loader's PRAGMAs. Results: bench/results/etl.json.
Run from the repository root: `python -m bench.etl [--rows N]`.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sqlite3
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

from bench.common import machine, timed, write_result
from nextoffer.config import Settings
from nextoffer.pipelines.etl import run_ingest
from nextoffer.store import migrate
from nextoffer.store.engine import make_engine
from nextoffer.synth.generator import generate_world

PG = os.environ.get("NEXTOFFER_BENCH_PG", "host=127.0.0.1 port=5432 user=postgres")
BARE_TABLE = """CREATE TABLE bare_transactions (
  transaction_id varchar(64), customer_id varchar(64), product_id varchar(64),
  ts timestamptz, type varchar(32), amount numeric(12,2), channel varchar(32))"""


SQLITE_BARE_TABLE = """CREATE TABLE bare_transactions (
  transaction_id VARCHAR(64), customer_id VARCHAR(64), product_id VARCHAR(64),
  ts DATETIME, type VARCHAR(32), amount NUMERIC(12, 2), channel VARCHAR(32))"""


def build_input(work: Path, rows: int, seed: int) -> tuple[Path, Path]:
    """A generated world whose transactions file is cut to exactly `rows` rows."""
    customers = max(1000, rows // 3)
    while True:
        world = work / f"world-{customers}"
        result = generate_world(world, customers, seed)
        if result.rows["transactions"] >= rows:
            break
        shutil.rmtree(world)
        customers *= 2
    setup = work / "setup"
    setup.mkdir()
    for name in ("products.csv", "customers.csv"):
        shutil.copy(world / name, setup / name)
    source = work / "load" / "transactions.csv"
    source.parent.mkdir()
    with (world / "transactions.csv").open("rb") as full, source.open("wb") as cut:
        for index, line in enumerate(full):
            if index > rows:
                break
            cut.write(line)
    return setup, source.parent


def bench_backend(url: str, setup: Path, load: Path, var: Path) -> dict[str, Any]:
    """Rows/s of a first load and of a repeated (no-change) load of the transactions."""
    settings = Settings(database_url=url, var_dir=var)
    engine = make_engine(url)
    migrate.upgrade(engine)
    run_ingest(engine, settings, setup)
    with timed() as first:
        loaded = run_ingest(engine, settings, load)
    with timed() as again:
        reloaded = run_ingest(engine, settings, load)
    engine.dispose()
    assert reloaded.rows_changed == 0, "a repeated load must change nothing"
    return {
        "rows": loaded.rows_read,
        "loaded": loaded.rows_loaded,
        "quarantined": loaded.rows_quarantined,
        "first_load_s": round(first(), 3),
        "first_load_rows_per_s": round(loaded.rows_read / first()),
        "repeat_load_s": round(again(), 3),
        "repeat_load_rows_per_s": round(reloaded.rows_read / again()),
    }


def psql(database: str, *args: str) -> None:
    subprocess.run(
        ["psql", "-q", "-v", "ON_ERROR_STOP=1", f"{PG} dbname={database}", *args],
        check=True,
        capture_output=True,
    )


def bench_psql_copy(database: str, load: Path) -> dict[str, Any]:
    """The database's own limit: psql \\copy of the same file into a bare typed table."""
    psql(database, "-c", BARE_TABLE)
    path = load / "transactions.csv"
    with timed() as elapsed:
        psql(
            database, "-c", f"\\copy bare_transactions FROM '{path}' WITH (FORMAT csv, HEADER true)"
        )
    rows = sum(1 for _ in path.open("rb")) - 1
    return {"rows": rows, "seconds": round(elapsed(), 3), "rows_per_s": round(rows / elapsed())}


def bench_sqlite_executemany(work: Path, load: Path) -> dict[str, Any]:
    """SQLite's own limit: one executemany of the file's rows into a bare table."""
    path = load / "transactions.csv"
    connection = sqlite3.connect(work / "bare.db")
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL"):  # as the loader's engine
        connection.execute(f"PRAGMA {pragma}")
    connection.execute(SQLITE_BARE_TABLE)
    with timed() as elapsed, path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader)
        with connection:
            connection.executemany(
                "INSERT INTO bare_transactions VALUES (?, ?, ?, ?, ?, ?, ?)", reader
            )
    rows = int(connection.execute("SELECT count(*) FROM bare_transactions").fetchone()[0])
    connection.close()
    return {"rows": rows, "seconds": round(elapsed(), 3), "rows_per_s": round(rows / elapsed())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="transactions to load")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--name", default="etl", help="result file name under bench/results/")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="nextoffer-bench-") as tmp:
        work = Path(tmp)
        setup, load = build_input(work, args.rows, args.seed)
        results: dict[str, Any] = {"machine": machine(), "rows": args.rows}
        results["sqlite"] = bench_backend(
            f"sqlite:///{work / 'bench.db'}", setup, load, work / "var1"
        )
        results["sqlite_executemany"] = bench_sqlite_executemany(work, load)
        database = f"nextoffer_bench_{uuid.uuid4().hex[:8]}"
        subprocess.run(
            ["psql", f"{PG} dbname=postgres", "-c", f'CREATE DATABASE "{database}"'],
            check=True,
            capture_output=True,
        )
        try:
            host = dict(p.split("=") for p in PG.split())
            url = f"postgresql+psycopg://{host['user']}@{host['host']}:{host['port']}/{database}"
            results["postgres"] = bench_backend(url, setup, load, work / "var2")
            results["psql_copy"] = bench_psql_copy(database, load)
        finally:
            subprocess.run(
                [
                    "psql",
                    f"{PG} dbname=postgres",
                    "-c",
                    f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)',
                ],
                check=True,
                capture_output=True,
            )
    pg_rate = results["postgres"]["first_load_rows_per_s"]
    copy_rate = results["psql_copy"]["rows_per_s"]
    results["ratio_postgres_to_psql_copy"] = round(pg_rate / copy_rate, 3)
    sqlite_rate = results["sqlite"]["first_load_rows_per_s"]
    bare_rate = results["sqlite_executemany"]["rows_per_s"]
    results["ratio_sqlite_to_executemany"] = round(sqlite_rate / bare_rate, 3)
    results["load_average"] = [round(x, 2) for x in os.getloadavg()]
    results["targets"] = {
        "postgres_rows_per_s": 100_000,
        "ratio_to_psql_copy": 0.5,
        "ratio_to_sqlite_executemany": 0.5,
    }
    results["meets_targets"] = {
        "postgres_rows_per_s": pg_rate >= 100_000,
        "ratio_to_psql_copy": results["ratio_postgres_to_psql_copy"] >= 0.5,
        "ratio_to_sqlite_executemany": results["ratio_sqlite_to_executemany"] >= 0.5,
    }
    path = write_result(args.name, results)
    print(
        f"etl bench: sqlite {sqlite_rate:,} rows/s · executemany {bare_rate:,} rows/s · "
        f"ratio {results['ratio_sqlite_to_executemany']} | postgres {pg_rate:,} rows/s · "
        f"psql \\copy {copy_rate:,} rows/s · ratio {results['ratio_postgres_to_psql_copy']} "
        f"(load average {results['load_average']}) → {path}"
    )


if __name__ == "__main__":
    main()
