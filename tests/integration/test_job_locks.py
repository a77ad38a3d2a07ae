"""Every way a job starts takes its lock and records one run; a refused start records nothing.

No mocks: a real PostgreSQL database, the real CLI, the real API server, a real Celery
worker on Redis and a beat chain on it. While this test holds the jobs' locks (with the
lock function every start uses, on the same database), each of the eight starts — CLI
`ingest`, `features`, `train`, `precompute`, `etl nightly`, `POST /v1/jobs`, a Celery task,
a beat chain — is refused and writes no `job_runs` row. Once released, each writes exactly
one row, and the chain one row per stage.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from nextoffer.cli import app as cli
from nextoffer.config import Settings
from nextoffer.jobs.broker import RUN_SCHEDULED, make_celery, send_job
from nextoffer.jobs.runner import hold_job_lock
from nextoffer.store import migrate
from nextoffer.store.engine import make_engine
from nextoffer.store.schema import JobRun
from nextoffer.synth.generator import generate_world
from nextoffer.worker.schedule import ENTRIES
from tests.conftest import require_service
from tests.e2e.server import NEXTOFFER, ApiServer, world_env
from tests.helpers import wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    # MLflow's own SQLAlchemy use, not ours.
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy"),
]

CUSTOMERS = 300
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
# A Redis database no other test uses, so FLUSHDB cannot hurt anyone's data.
REDIS_DB = 10
# The beat entry whose chain is started: two stages, both light on a small world.
CHAIN = next(e for e in ENTRIES if e.name == "backup")
# The CLI starts: the command and the job it starts.
CLI_STARTS: list[tuple[list[str], str]] = [
    (["ingest", "{data}"], "ingest"),
    (["features"], "features"),
    (["train", "--models", "offers", "--no-score"], "training"),
    (["precompute"], "precompute"),
    (["etl", "nightly"], "etl"),
]
API_JOB = "kpi_refresh"
TASK_JOB = "fallback_refresh"
LOCKED = sorted({job for _, job in CLI_STARTS} | {API_JOB, TASK_JOB, CHAIN.jobs[0]})


def _runs(engine: Engine) -> list[tuple[str, str, str]]:
    """Every run: (run id, job, status)."""
    with engine.connect() as conn:
        rows = conn.execute(select(JobRun.run_id, JobRun.job, JobRun.status)).all()
    return [(r.run_id, r.job, r.status) for r in rows]


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(JobRun)).scalar_one())


@contextlib.contextmanager
def _worker(env: dict[str, str], log_path: Path) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """`nextoffer worker` on every queue; yields a reader of its JSON log lines."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [NEXTOFFER, "worker", "--concurrency", "2"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def records() -> list[dict[str, Any]]:
        lines = log_path.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    try:
        wait_until(
            lambda: (
                any(r.get("message", "").endswith(" ready.") for r in records())
                or process.poll() is not None
            ),
            60,
            "the worker to start",
        )
        assert process.poll() is None, log_path.read_text()[-4000:]
        yield records
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture
def broker_url() -> Iterator[str]:
    """An empty Redis database as the broker."""
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    import redis

    admin = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
    admin.flushdb()
    try:
        yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
    finally:
        admin.flushdb()
        admin.close()


def test_every_start_takes_the_lock_and_records_one_run(
    postgres_url: str, broker_url: str, tmp_path: Path
) -> None:
    var_dir = tmp_path / "var"
    data = tmp_path / "data"
    generate_world(data, CUSTOMERS, 7)
    env = world_env(var_dir, postgres_url)
    env.update(
        NEXTOFFER_INGEST_SOURCE=str(data),
        NEXTOFFER_BACKUP_URL=f"file://{tmp_path / 'backups'}",
        NEXTOFFER_LOG_LEVEL="INFO",
    )
    settings = Settings(
        database_url=postgres_url,
        var_dir=var_dir,
        broker_url=broker_url,
        backup_url=env["NEXTOFFER_BACKUP_URL"],
    )
    engine = make_engine(postgres_url)
    migrate.upgrade(engine)
    runner = CliRunner()

    def nextoffer(*args: str) -> Any:
        return runner.invoke(cli, list(args), env=env)

    key = nextoffer("keys", "create", "--role", "operator")
    assert key.exit_code == 0, key.output
    api_key = key.stdout.strip().splitlines()[-1]
    worker_env = {
        **env,
        "NEXTOFFER_BROKER_URL": broker_url,
        "NEXTOFFER_WORKER_METRICS_PORT": "0",
    }
    server = ApiServer(env, tmp_path / "api.log").start()
    sender = make_celery(settings)
    try:
        with _worker(worker_env, tmp_path / "worker.log") as worker_log:
            api = httpx.Client(base_url=server.url, headers={"X-API-Key": api_key}, timeout=30)

            def refused_on_worker(run_id: str) -> bool:
                return any(
                    r.get("id") == run_id and "refused" in r.get("message", "")
                    for r in worker_log()
                )

            # --- the locks held: every start refused, nothing recorded ----------------------
            with contextlib.ExitStack() as held:
                for job in LOCKED:
                    assert held.enter_context(hold_job_lock(settings, engine, job)), job
                for args, job in CLI_STARTS:
                    done = nextoffer(*(a.format(data=data) for a in args))
                    assert done.exit_code == 1, (args, done.output)
                    assert f"a {job} job is already running" in done.output, done.output

                answer = api.post("/v1/jobs", json={"kind": API_JOB, "params": {}})
                assert answer.status_code == 409, answer.text
                assert answer.json()["type"].endswith("conflict")
                assert "already running" in answer.json()["detail"]

                refused_task = str(uuid.uuid4())
                send_job(sender, TASK_JOB, {}, refused_task)
                wait_until(lambda: refused_on_worker(refused_task), 60, "the task's refusal")

                fired = sender.send_task(RUN_SCHEDULED, args=[CHAIN.name, list(CHAIN.jobs)])
                refused_chain = fired.get(timeout=60)
                assert len(refused_chain) == len(CHAIN.jobs)
                wait_until(lambda: refused_on_worker(refused_chain[0]), 60, "the chain's refusal")
                assert _runs(engine) == []

            # --- released: each start records exactly one run -------------------------------
            for args, job in CLI_STARTS:
                before = _runs(engine)
                done = nextoffer(*(a.format(data=data) for a in args))
                assert done.exit_code == 0, (args, done.output)
                new = [r for r in _runs(engine) if r not in before]
                assert [(j, s) for _, j, s in new] == [(job, "succeeded")], (args, new)

            answer = api.post("/v1/jobs", json={"kind": API_JOB, "params": {}})
            assert answer.status_code == 202, answer.text
            api_run = answer.json()["job_id"]

            def api_job_done() -> bool:
                status = api.get(f"/v1/jobs/{api_run}").json()["status"]
                return bool(status in ("succeeded", "failed"))

            wait_until(api_job_done, 60, "the API's job")

            task_run = str(uuid.uuid4())
            send_job(sender, TASK_JOB, {}, task_run)
            chain_runs = sender.send_task(RUN_SCHEDULED, args=[CHAIN.name, list(CHAIN.jobs)]).get(
                timeout=60
            )

            def all_finished() -> bool:
                finished = {r for r, _, s in _runs(engine) if s in ("succeeded", "failed")}
                return {task_run, *chain_runs} <= finished

            wait_until(all_finished, 120, "the task and the chain")
            api.close()
    finally:
        sender.close()
        server.stop()

    runs = {run_id: (job, status) for run_id, job, status in _runs(engine)}
    assert runs[api_run] == (API_JOB, "succeeded")
    assert runs[task_run] == (TASK_JOB, "succeeded")
    # The chain: one run per stage, in its order.
    assert [runs[r] for r in chain_runs] == [(job, "succeeded") for job in CHAIN.jobs]
    # The refused task and chain never ran later either (a refused stage ends its chain).
    assert not {refused_task, *refused_chain} & set(runs)
    # Exactly one row per start: five CLI commands, the API's, the task's, two stages.
    assert _count(engine) == len(CLI_STARTS) + 1 + 1 + len(CHAIN.jobs)
    engine.dispose()


def test_the_lock_is_taken_on_the_direct_database_url(postgres_url: str, tmp_path: Path) -> None:
    # The engine a process queries through stands for pgbouncer here: a SQLite file, which
    # would take a file lock. With NEXTOFFER_DATABASE_DIRECT_URL set, the job's lock is an
    # advisory lock on that PostgreSQL database instead, where every other host sees it.
    pooled = make_engine(f"sqlite:///{tmp_path / 'pooled.db'}")
    settings = Settings(
        database_url=str(pooled.url), database_direct_url=postgres_url, var_dir=tmp_path
    )
    direct = make_engine(postgres_url)
    try:
        with hold_job_lock(settings, pooled, "etl") as held:
            assert held
            with hold_job_lock(Settings(database_url=postgres_url), direct, "etl") as other:
                assert not other
        with hold_job_lock(Settings(database_url=postgres_url), direct, "etl") as again:
            assert again
    finally:
        pooled.dispose()
        direct.dispose()
