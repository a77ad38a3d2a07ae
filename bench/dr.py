"""DR drill at scale: restore + cache rebuild + first answer (RTO) against a bare pg_restore.

A world of N generated customers (default 100 000) is built in a fresh PostgreSQL database
with the README's main job, backed up with `nextoffer backup create`, then drilled with
`nextoffer dr drill` (restore into a scratch database with per-table checks, cache rebuilt
from it, one offer answered from that cache). The baseline, measured in the same run on the
same dump, is a bare `pg_restore` of it into an empty database: the ratio says what the
drill's checks, registry handling and cache rebuild cost on top of the copy itself.
Target (issue 6): RTO under 2 minutes at 100 000 customers. Results: bench/results/dr.json.
Run from the repository root: `python -m bench.dr [--customers 100000]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import create_engine, select

from bench.common import machine, timed, write_result
from nextoffer.ops.pgtools import pg_program
from nextoffer.store.schema import JobRun

PG = os.environ.get("NEXTOFFER_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
TARGET_RTO_S = 120.0
NEXTOFFER = str(Path(sys.executable).with_name("nextoffer"))


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [NEXTOFFER, *args], env=env, capture_output=True, text=True, check=False, timeout=7200
    )
    if done.returncode != 0:
        raise SystemExit(f"nextoffer {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def admin(sql: str) -> None:
    host = PG.split("@", 1)[1].split("/", 1)[0]
    hostname, port = host.split(":")
    conninfo = f"host={hostname} port={port} user=postgres dbname=postgres"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql)


def bench(customers: int) -> dict[str, Any]:
    name = f"nextoffer_bench_dr_{uuid.uuid4().hex[:8]}"
    baseline_db = f"{name}_bare"
    url = f"{PG}/{name}"
    admin(f'CREATE DATABASE "{name}"')
    admin(f'CREATE DATABASE "{baseline_db}"')
    try:
        with tempfile.TemporaryDirectory(prefix="bench-dr-") as tmp:
            var = Path(tmp)
            env = {k: v for k, v in os.environ.items() if not k.startswith("NEXTOFFER_")}
            env.update(
                NEXTOFFER_DATABASE_URL=url,
                NEXTOFFER_VAR_DIR=str(var),
                NEXTOFFER_REGISTRY_URI=f"sqlite:///{var / 'mlflow.db'}",
                NEXTOFFER_ARTIFACTS_URL=f"file://{var / 'artifacts'}",
                NEXTOFFER_BACKUP_URL=f"file://{var / 'backups'}",
                NEXTOFFER_LOG_LEVEL="WARNING",
            )
            with timed() as world_s:
                cli(
                    env,
                    "quickstart",
                    "--customers",
                    str(customers),
                    "--data",
                    str(var / "data"),
                    "--no-serve",
                )
            with timed() as backup_s:
                cli(env, "backup", "create")
            dump = next((var / "backups").rglob("db.dump"))
            dump_bytes = dump.stat().st_size

            # Baseline: the same dump, restored bare, no checks, no registry, no cache.
            host = PG.split("@", 1)[1].split("/", 1)[0]
            hostname, port = host.split(":")
            with timed() as bare_s:
                subprocess.run(
                    [
                        pg_program("pg_restore"),
                        "--no-owner",
                        "-h",
                        hostname,
                        "-p",
                        port,
                        "-U",
                        "postgres",
                        "-d",
                        baseline_db,
                        str(dump),
                    ],
                    check=True,
                    capture_output=True,
                )
            with timed() as drill_wall_s:
                cli(env, "dr", "drill")
            engine = create_engine(url)
            with engine.connect() as conn:
                counts = conn.execute(
                    select(JobRun.counts)
                    .where(JobRun.job == "dr_drill", JobRun.status == "succeeded")
                    .order_by(JobRun.started_at.desc())
                    .limit(1)
                ).scalar_one()
            engine.dispose()
    finally:
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin(f'DROP DATABASE IF EXISTS "{baseline_db}" WITH (FORCE)')
    return {
        "customers": customers,
        "world_build_s": round(world_s(), 1),
        "backup_s": round(backup_s(), 2),
        "dump_bytes": dump_bytes,
        "drill": counts,
        "drill_command_wall_s": round(drill_wall_s(), 2),
        "baseline_bare_pg_restore_s": round(bare_s(), 2),
        "ratios": {
            "rto_to_bare_restore": round(float(counts["rto_s"]) / bare_s(), 2),
            "restore_to_bare_restore": round(float(counts["restore_s"]) / bare_s(), 2),
        },
        "target_rto_s": TARGET_RTO_S,
        "target_met": float(counts["rto_s"]) < TARGET_RTO_S,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    args = parser.parse_args()
    run = bench(args.customers)
    path = write_result(
        "dr",
        {"machine": machine(), "load_average_at_start": list(os.getloadavg()), "run": run},
    )
    print(json.dumps(run, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
