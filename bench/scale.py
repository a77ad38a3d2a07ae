"""End to end at 100 k, 1 M and 10 M customers on PostgreSQL: seconds and peak RSS per stage.

    python -m bench.scale [--customers 100000,1000000,10000000] [--work var/bench-scale]

Every stage runs the product's own commands in child processes, the way an operator runs
them: generate → ingest → features → train (sampled as configured) → churn scoring →
precompute fanned out to Celery workers → cache rebuild into a Redis run under
`maxmemory` with `allkeys-lru` (the shipped cache.conf's policy: answers are a cache, the
database keeps the truth). Each stage records `measured: true`, its seconds and the peak
RSS of every process that did its work (the stage's command, and for precompute each
Celery worker process), read from the kernel (wait4's ru_maxrss, /proc/PID/status VmHWM).

A 10 M run takes hours, so the run resumes: a size's state lives in
`<work>/<size>/state.json` and the next run starts at its first unmeasured stage, on the
same database (`nextoffer_scale_<size>`, kept between runs; `--fresh` drops it). Generated
files are gzipped after generation and deleted once ingested. Growth per stage (seconds
and memory per customer, against the previous size) goes to bench/results/scale.json.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import machine, write_result

NEXTOFFER = str(Path(sys.executable).with_name("nextoffer"))
PG_SERVER = os.environ.get("BENCH_PG_SERVER", "postgresql+psycopg://postgres@127.0.0.1:5432")
STAGES = ("generate", "ingest", "features", "train", "churn_scoring", "precompute", "cache")
REDIS_POLICY = "allkeys-lru"
SCORE_CHURN = """
from nextoffer.config import Settings
from nextoffer.platform import build_platform
from nextoffer.pipelines.score_churn import score_all_customers
from nextoffer.scoring.champions import load_churn_champion
from nextoffer.store.runs import utcnow
settings = Settings()
platform = build_platform(settings)
champion = load_churn_champion(platform.registry)
print(score_all_customers(platform.engine, champion.model, champion.label, utcnow(),
                          settings.churn_bands))
"""


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kib_to_mb(kib: int) -> float:
    """Kernel KiB as MB (rounded, as the results print them)."""
    return round(kib / 1024, 1)


def run_measured(command: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run one command to completion; its seconds and peak RSS (its own, or a child's).

    Linux keeps, across exec, the peak of the memory the exec replaced (with vfork, this
    process's), so a stage's peak is at least this small process's own (~40 MB).
    """
    start = time.perf_counter()
    with log.open("ab") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(command[:3])} failed ({code}); see {log}")
    return {"seconds": round(seconds, 2), "peak_rss_mb": {"command": kib_to_mb(usage.ru_maxrss)}}


def process_tree(pid: int) -> list[int]:
    """`pid` and every descendant, from /proc's children lists."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            children = (task / "children").read_text().split() if task.exists() else []
            todo.extend(int(c) for c in children)
    return found


def peak_rss_kib(pid: int) -> int:
    """VmHWM: the most memory the process ever had resident."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


@contextmanager
def redis_under_maxmemory(maxmemory: str) -> Iterator[str]:
    """A private Redis for the cache with `maxmemory` and the shipped eviction policy."""
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxmemory",
            maxmemory,
            "--maxmemory-policy",
            REDIS_POLICY,
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port)
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)


def _wait_for_port(port: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port} after {timeout_s} s")


@contextmanager
def celery_workers(count: int, env: dict[str, str], log: Path) -> Iterator[list[int]]:
    """`count` worker processes (`nextoffer worker`), stopped afterwards."""
    procs, ports = [], [free_port() for _ in range(count)]
    with log.open("ab") as out:
        for port in ports:
            # The CLI coordinates; the workers only take chunks, one at a time each.
            command = [NEXTOFFER, "worker", "--queues", "precompute", "--concurrency", "1"]
            command += ["--metrics-port", str(port)]
            procs.append(subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT))
    try:
        for port in ports:  # a worker serves /metrics once it has started
            _wait_for_port(port, timeout_s=120)
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()


def gzip_files(folder: Path) -> None:
    """Gzip every CSV in `folder` (ingest reads .csv.gz), removing the plain files."""
    for path in sorted(folder.glob("*.csv")):
        with path.open("rb") as src, gzip.open(f"{path}.gz", "wb", compresslevel=1) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        path.unlink()


class SizeRun:
    """One world size: its folder, database, state file and the stages still to measure."""

    def __init__(self, customers: int, args: argparse.Namespace) -> None:
        self.customers = customers
        self.args = args
        self.folder = Path(args.work) / str(customers)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.state_path = self.folder / "state.json"
        self.database = f"nextoffer_scale_{customers}"
        self.log = self.folder / "run.log"
        self.state: dict[str, Any] = (
            json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        )

    def env(self, cache_url: str = "memory://", broker_url: str = "") -> dict[str, str]:
        """The settings every process of this size runs with."""
        var = self.folder / "var"
        return {
            **os.environ,
            "NEXTOFFER_DATABASE_URL": f"{PG_SERVER}/{self.database}",
            "NEXTOFFER_VAR_DIR": str(var),
            "NEXTOFFER_REGISTRY_URI": f"sqlite:///{var / 'mlflow.db'}",
            "NEXTOFFER_ARTIFACTS_URL": f"file://{var / 'artifacts'}",
            "NEXTOFFER_CACHE_URL": cache_url,
            "NEXTOFFER_BROKER_URL": broker_url,
            "NEXTOFFER_ALLOW_INSECURE_SECRETS": "true",
            "NEXTOFFER_LOG_LEVEL": "WARNING",
        }

    def save(self) -> None:
        self.state_path.write_text(json.dumps(self.state, indent=2, sort_keys=True) + "\n")

    def record(self, stage: str, result: dict[str, Any]) -> None:
        self.state[stage] = {"measured": True, **result}
        self.save()
        print(
            f"{self.customers:>10,} {stage:<14} {result['seconds']:>9.1f} s  "
            f"{result['peak_rss_mb']}",
            flush=True,
        )

    def run(self) -> dict[str, Any]:
        steps: dict[str, Callable[[], dict[str, Any]]] = {
            "generate": self.generate,
            "ingest": self.ingest,
            "features": lambda: self.cli(["features"]),
            "train": lambda: self.cli(["train", "--models", "offers,churn", "--no-score"]),
            "churn_scoring": lambda: run_measured(
                [sys.executable, "-c", SCORE_CHURN], self.env(), self.log
            ),
            "precompute": self.precompute,
            "cache": self.cache_rebuild,
        }
        for stage in STAGES:
            if self.state.get(stage, {}).get("measured"):
                continue
            self.record(stage, steps[stage]())
            if stage == "ingest":
                # The database holds it now; 10 M customers' files are large.
                shutil.rmtree(self.folder / "data")
        return self.report()

    def report(self) -> dict[str, Any]:
        """Every stage as measured so far (`measured: false` for those still to run)."""
        stages = {s: self.state.get(s, {"measured": False}) for s in STAGES}
        return {"customers": self.customers, "stages": stages}

    def cli(self, arguments: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
        return run_measured([NEXTOFFER, *arguments], env or self.env(), self.log)

    def generate(self) -> dict[str, Any]:
        data = self.folder / "data"
        shutil.rmtree(data, ignore_errors=True)
        result = self.cli(["generate", "--out", str(data), "--customers", str(self.customers)])
        start = time.perf_counter()
        gzip_files(data)
        result["gzip_seconds"] = round(time.perf_counter() - start, 2)
        result["gzipped_mb"] = round(sum(p.stat().st_size for p in data.iterdir()) / 1e6, 1)
        return result

    def ingest(self) -> dict[str, Any]:
        data = self.folder / "data"
        self.cli(["db", "upgrade"])  # untimed: a no-op when the schema is current
        return self.cli(["ingest", str(data)])

    def precompute(self) -> dict[str, Any]:
        broker = f"redis://127.0.0.1:6379/{self.args.broker_db}"
        with redis_under_maxmemory(self.args.redis_maxmemory) as cache_url:
            env = self.env(cache_url, broker)
            with celery_workers(self.args.workers, env, self.log) as pids:
                result = self.cli(["precompute"], env)
                for n, pid in enumerate(pids):
                    peaks = [peak_rss_kib(p) for p in process_tree(pid)]
                    result["peak_rss_mb"][f"worker_{n + 1}"] = [kib_to_mb(k) for k in peaks]
        return result

    def cache_rebuild(self) -> dict[str, Any]:
        with redis_under_maxmemory(self.args.redis_maxmemory) as cache_url:
            result = self.cli(["cache", "rebuild"], self.env(cache_url))
        result["redis"] = {"maxmemory": self.args.redis_maxmemory, "policy": REDIS_POLICY}
        return result


def create_database(name: str, *, fresh: bool) -> None:
    """The size's database, created when missing (dropped first with `fresh`)."""
    from sqlalchemy import create_engine, text

    admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if fresh:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
        if exists.first() is None:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()


def growth(runs: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per stage, seconds at each size over seconds at the previous size, against the size
    ratio: 1.0 is linear."""
    out: dict[str, dict[str, float | None]] = {}
    for before, after in itertools.pairwise(runs):
        size_ratio = after["customers"] / before["customers"]
        label = f"{before['customers']}->{after['customers']}"
        out[label] = {
            stage: round(
                after["stages"][stage]["seconds"] / before["stages"][stage]["seconds"] / size_ratio,
                3,
            )
            if after["stages"][stage]["measured"] and before["stages"][stage]["measured"]
            else None
            for stage in STAGES
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", default="100000,1000000,10000000")
    parser.add_argument("--work", default="var/bench-scale")
    parser.add_argument("--workers", type=int, default=2, help="Celery workers for precompute")
    parser.add_argument("--broker-db", type=int, default=11, help="Redis db for the broker")
    parser.add_argument("--redis-maxmemory", default="2gb")
    parser.add_argument("--fresh", action="store_true", help="start every size again")
    parser.add_argument(
        "--report-only", action="store_true", help="write the results measured so far, run nothing"
    )
    args = parser.parse_args()
    runs = []
    for customers in (int(c) for c in args.customers.split(",")):
        size = SizeRun(customers, args)
        if args.report_only:
            runs.append(size.report())
            continue
        if args.fresh:
            shutil.rmtree(size.folder)
            size = SizeRun(customers, args)
        create_database(size.database, fresh=args.fresh)
        runs.append(size.run())
    path = write_result(
        "scale",
        {
            "machine": machine(),
            "redis": {"maxmemory": args.redis_maxmemory, "policy": REDIS_POLICY},
            "workers": args.workers,
            "runs": runs,
            "growth_per_customer": growth(runs),
        },
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
