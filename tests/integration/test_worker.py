"""Jobs on a real Celery worker over Redis and RabbitMQ: precompute fans out, nothing twice.

One trained world in a fresh PostgreSQL database (several processes write to it, which
SQLite does badly) is shared by every test here; each broker gets its own worker
subprocess, `nextoffer worker --concurrency 2`, killed after its tests.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, distinct, func, select

from nextoffer.config import Settings
from nextoffer.domain.errors import BackendUnavailableError, JobConflictError, NextOfferError
from nextoffer.jobs.context import JobContext
from nextoffer.jobs.dispatch import JobRunner
from nextoffer.jobs.runner import run_exclusive
from nextoffer.pipelines.precompute import run_precompute
from nextoffer.registry.mlflow_registry import ModelRegistry
from nextoffer.scoring.champions import load_offer_champion
from nextoffer.store import migrate
from nextoffer.store.engine import make_engine
from nextoffer.store.locks import try_lock
from nextoffer.store.runs import fail_run, get_run, queue_run, recorded_run
from nextoffer.store.schema import JobRun, PrecomputedOffers, UserFeatures
from nextoffer.worker.app import make_celery
from nextoffer.worker.fanout import chunk_runner
from nextoffer.worker.schedule import RUN_SCHEDULED
from tests.conftest import PG_HOST, PG_PORT, require_service
from tests.e2e.server import NEXTOFFER, build_world, free_port, run_cli, world_env
from tests.helpers import wait_until

# MLflow's own SQLAlchemy use, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy")

CUSTOMERS = 1000
CHUNK_ROWS = 200
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
# A Redis database nothing else uses, so FLUSHDB cannot hurt anyone's data.
REDIS_DB = 12
# The worker's cache: another database than the broker's, as make_celery insists.
CACHE_DB = 14
CACHE_URL = f"redis://127.0.0.1:6379/{CACHE_DB}"
RABBIT_HOST, RABBIT_PORT = "127.0.0.1", 5672


@dataclass
class World:
    """A trained world: its folder, database and the settings a process on it uses."""

    var_dir: Path
    database_url: str
    engine: Engine

    def settings(self, broker_url: str = "") -> Settings:
        """Settings on this world (as world_env gives a subprocess)."""
        return Settings(
            database_url=self.database_url,
            var_dir=self.var_dir,
            registry_uri=f"sqlite:///{self.var_dir / 'mlflow.db'}",
            artifacts_url=f"file://{self.var_dir / 'artifacts'}",
            broker_url=broker_url,
            precompute_chunk_rows=CHUNK_ROWS,
        )

    def context(self) -> JobContext:
        """A job context that runs precompute chunks in this process."""
        settings = self.settings()
        return JobContext(self.engine, settings, ModelRegistry.from_settings(settings))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """1000 customers generated, trained and precomputed in a fresh PostgreSQL database."""
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    import psycopg

    name = f"nextoffer_worker_{uuid.uuid4().hex[:12]}"
    admin = f"host={PG_HOST} port={PG_PORT} user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    engine = None
    try:
        database_url = f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{name}"
        var_dir = tmp_path_factory.mktemp("worker-world")
        build_world(var_dir, database_url, CUSTOMERS)
        engine = make_engine(database_url)
        yield World(var_dir, database_url, engine)
    finally:
        if engine is not None:
            engine.dispose()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _redis() -> Iterator[str]:
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    import redis

    admin = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
    admin.flushdb()
    try:
        yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
    finally:
        admin.flushdb()
        admin.close()


def _rabbitmqctl(*args: str) -> bool:
    if shutil.which("rabbitmqctl") is None:
        return False
    done = subprocess.run(["rabbitmqctl", *args], capture_output=True, timeout=60, check=False)
    return done.returncode == 0


def _rabbitmq() -> Iterator[str]:
    require_service("RabbitMQ", RABBIT_HOST, RABBIT_PORT)
    vhost = f"nextoffer_test_{uuid.uuid4().hex[:8]}"
    if _rabbitmqctl("add_vhost", vhost) and _rabbitmqctl(
        "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"
    ):
        try:
            yield f"amqp://guest:guest@{RABBIT_HOST}:{RABBIT_PORT}/{vhost}"
        finally:
            _rabbitmqctl("delete_vhost", vhost)
        return
    # No rabbitmqctl here (a broker in a container): the default vhost, emptied of our
    # queues before and after.
    from nextoffer.worker.app import make_celery

    url = f"amqp://guest:guest@{RABBIT_HOST}:{RABBIT_PORT}//"
    purger = make_celery(Settings(broker_url=url))
    purger.control.purge()
    try:
        yield url
    finally:
        purger.control.purge()
        purger.close()


@pytest.fixture(scope="module", params=["redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest) -> Iterator[str]:
    """A broker URL on an empty Redis database or RabbitMQ vhost."""
    yield from {"redis": _redis, "rabbitmq": _rabbitmq}[request.param]()


@dataclass
class Worker:
    """A `nextoffer worker` subprocess and its JSON-lines log."""

    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes]

    def records(self) -> list[dict[str, Any]]:
        """Every JSON log line so far."""
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def tail(self) -> str:
        """The end of the log, for failure messages."""
        return self.log_path.read_text(errors="replace")[-4000:]


@pytest.fixture(scope="module")
def worker(world: World, broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """`nextoffer worker --concurrency 2` on every queue, ready to take tasks."""
    env = world_env(world.var_dir, world.database_url, cache_url=CACHE_URL)
    env.update(
        NEXTOFFER_BROKER_URL=broker,
        NEXTOFFER_PRECOMPUTE_CHUNK_ROWS=str(CHUNK_ROWS),
        NEXTOFFER_LOG_LEVEL="INFO",
        NEXTOFFER_WORKER_METRICS_PORT=str(free_port()),
    )
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    with log_path.open("wb") as log:
        # Its own session, so that teardown can end the pool processes with their parent.
        process = subprocess.Popen(
            [NEXTOFFER, "worker", "--concurrency", "2"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = Worker(env, log_path, process)
    try:
        wait_until(
            lambda: (
                any(r.get("message", "").endswith(" ready.") for r in running.records())
                or process.poll() is not None
            ),
            60,
            "the worker to start",
        )
        assert process.poll() is None, f"the worker exited:\n{running.tail()}"
        yield running
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the worker's process group (a warm shutdown), SIGKILL it after 15 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def _wait_for_run(engine: Engine, run_id: str, worker: Worker) -> JobRun:
    def finished() -> bool:
        run = get_run(engine, run_id)
        assert worker.process.poll() is None, f"the worker died:\n{worker.tail()}"
        return run is not None and run.status in ("succeeded", "failed")

    wait_until(finished, 120, f"job {run_id}\n{worker.tail()}")
    run = get_run(engine, run_id)
    assert run is not None
    return run


def _check_precomputed(engine: Engine, computed_at: datetime, model_version: str) -> int:
    """One row per customer with features, every one from this run; returns the count."""
    with engine.connect() as conn:
        featured = conn.execute(select(func.count()).select_from(UserFeatures)).scalar_one()
        rows, customers = conn.execute(
            select(func.count(), func.count(distinct(PrecomputedOffers.customer_id)))
        ).one()
        unfeatured = conn.execute(
            select(func.count())
            .select_from(PrecomputedOffers)
            .where(PrecomputedOffers.customer_id.not_in(select(UserFeatures.customer_id)))
        ).scalar_one()
        stamps = conn.execute(select(PrecomputedOffers.computed_at).distinct()).scalars().all()
        versions = conn.execute(select(PrecomputedOffers.model_version).distinct()).scalars().all()
    assert rows == customers == featured and unfeatured == 0
    assert stamps == [computed_at]
    assert versions == [model_version]
    return int(featured)


def _chunk_logs(worker: Worker, computed_at: str) -> list[dict[str, Any]]:
    return [
        r
        for r in worker.records()
        if r.get("logger") == "nextoffer.worker.tasks"
        and "chunk" in r
        and r.get("computed_at") == computed_at
    ]


@pytest.mark.integration
@pytest.mark.slow
def test_precompute_job_runs_on_the_worker_and_fans_out_its_chunks(
    world: World, broker: str, worker: Worker
) -> None:
    settings = world.settings(broker)
    runner = JobRunner(
        JobContext(world.engine, settings, ModelRegistry.from_settings(settings)),
        after=lambda _kind: None,
    )
    try:
        run_id = runner.start("precompute", {}, "test")
        queued = get_run(world.engine, run_id)
        # Recorded before it was sent, so the id can be polled at once.
        assert queued is not None and queued.status in ("queued", "running", "succeeded")
        run = _wait_for_run(world.engine, run_id, worker)
    finally:
        runner.shutdown()
    assert run.status == "succeeded", run.message
    counts = run.counts
    featured = _check_precomputed(
        world.engine, datetime.fromisoformat(counts["computed_at"]), counts["model_version"]
    )
    assert counts["customers"] == featured == CUSTOMERS
    assert counts["chunks"] == math.ceil(featured / CHUNK_ROWS) == 5

    # Each chunk was a task of its own on the worker, scored with the coordinator's model
    # version and instant, in a process other than the waiting coordinator's.
    chunks = _chunk_logs(worker, counts["computed_at"])
    assert sorted(r["customers"] for r in chunks) == [CHUNK_ROWS] * 5
    assert {f"v{r['model_version']}" for r in chunks} == {counts["model_version"]}
    coordinator = [
        r
        for r in worker.records()
        if r.get("logger") == "nextoffer.worker.fanout"
        and r.get("computed_at") == counts["computed_at"]
    ]
    assert len(coordinator) == 1 and coordinator[0]["id"] == run_id
    assert coordinator[0]["pid"] not in {r["pid"] for r in chunks}


@pytest.mark.integration
@pytest.mark.slow
def test_cli_precompute_coordinates_and_the_worker_scores(
    world: World, broker: str, worker: Worker
) -> None:
    out = run_cli(worker.env, "precompute")
    assert f"{CUSTOMERS:,} customers" in out and "in 5 chunks" in out, out
    with world.engine.connect() as conn:
        computed_at = conn.execute(select(func.max(PrecomputedOffers.computed_at))).scalar_one()
        version = conn.execute(select(PrecomputedOffers.model_version).limit(1)).scalar_one()
    _check_precomputed(world.engine, computed_at, version)
    assert len(_chunk_logs(worker, computed_at.isoformat())) == 5


@pytest.mark.integration
@pytest.mark.slow
def test_a_failed_chunk_fails_the_run_with_its_reason(
    world: World, broker: str, worker: Worker
) -> None:
    settings = world.settings(broker)
    app = make_celery(settings)
    champion = load_offer_champion(ModelRegistry.from_settings(settings))
    try:
        # Chunks told to score with a version that was never registered fail on the worker.
        with pytest.raises(NextOfferError, match=r"precompute chunk .* failed \(FAILURE\)") as err:
            run_precompute(world.engine, settings, champion, run_chunks=chunk_runner(app, 9_999))
        assert "9999" in str(err.value)  # the worker's own reason travels back
    finally:
        app.close()


@pytest.mark.integration
@pytest.mark.slow
def test_a_beat_entry_runs_its_jobs_in_order_and_the_worker_counts_them(
    world: World, broker: str, worker: Worker
) -> None:
    import redis
    from prometheus_client.parser import text_string_to_metric_families

    cache = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=CACHE_DB, decode_responses=True)
    cache.flushdb()
    app = make_celery(world.settings(broker))
    since = datetime.now(UTC)
    try:
        app.send_task(RUN_SCHEDULED, args=["test-entry", ["kpi_refresh", "cache_rebuild"]])

        def both_done() -> bool:
            with world.engine.connect() as conn:
                rows = conn.execute(
                    select(JobRun).where(
                        JobRun.job.in_(["kpi_refresh", "cache_rebuild"]),
                        JobRun.started_at >= since,
                        JobRun.status.in_(["succeeded", "failed"]),
                    )
                ).all()
            return len(rows) == 2

        wait_until(both_done, 120, f"the scheduled jobs\n{worker.tail()}")
        with world.engine.connect() as conn:
            kpi, rebuild = conn.execute(
                select(JobRun)
                .where(JobRun.job.in_(["kpi_refresh", "cache_rebuild"]), JobRun.started_at >= since)
                .order_by(JobRun.started_at)
            ).all()
            precomputed = conn.execute(select(func.count()).select_from(PrecomputedOffers)).scalar()
            segment_of = dict(
                conn.execute(select(UserFeatures.customer_id, UserFeatures.segment_id)).all()
            )
        # A chain: the second job started after the first had finished.
        assert (kpi.job, rebuild.job) == ("kpi_refresh", "cache_rebuild")
        assert kpi.status == rebuild.status == "succeeded", (kpi.message, rebuild.message)
        assert rebuild.started_at >= kpi.finished_at
        assert kpi.counts["customers"] == CUSTOMERS

        # The rebuild wrote one answer per precomputed customer, and every segment, to Redis.
        offers_keys = list(cache.scan_iter("offers:*", count=1000))
        assert len(offers_keys) == rebuild.counts["offers"] == precomputed
        assert rebuild.counts["segments"] == len(segment_of) == CUSTOMERS
        customer, segment = next(iter(segment_of.items()))
        assert json.loads(cache.get(f"user:segment:{customer}") or "{}")["segment_id"] == segment
        assert cache.exists("segment:popular:all")

        # The worker's own /metrics: tasks by state, durations, queue lengths.
        port = int(worker.env["NEXTOFFER_WORKER_METRICS_PORT"])
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        found = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }
        done = found[
            (
                "nextoffer_celery_tasks_total",
                (("state", "succeeded"), ("task", "nextoffer.run_job")),
            )
        ]
        with world.engine.connect() as conn:
            on_worker = conn.execute(
                select(func.count()).select_from(JobRun).where(JobRun.status == "succeeded")
            ).scalar_one()
        assert 2 <= done <= on_worker
        assert (
            found[
                ("nextoffer_celery_task_duration_seconds_count", (("task", "nextoffer.run_job"),))
            ]
            >= done
        )
        queues = {
            dict(labels)["queue"]: value
            for (name, labels), value in found.items()
            if name == "nextoffer_celery_queue_length"
        }
        assert set(queues) == {"etl", "training", "precompute", "ops"}
        assert all(v >= 0 for v in queues.values())
        assert ("nextoffer_celery_active_tasks", ()) in found
    finally:
        app.close()
        cache.close()


@pytest.mark.integration
@pytest.mark.slow
def test_a_job_runs_once_per_run_id_and_one_of_a_kind_at_a_time(world: World) -> None:
    context = world.context()
    run_id = str(uuid.uuid4())
    first = run_exclusive(context, "precompute", {}, run_id)
    done = get_run(world.engine, run_id)
    # Delivered again (a redelivered message): the counts, not a second run.
    assert run_exclusive(context, "precompute", {}, run_id) == first
    again = get_run(world.engine, run_id)
    assert done is not None and again is not None
    assert again.finished_at == done.finished_at and again.status == "succeeded"

    refused = str(uuid.uuid4())
    with try_lock(world.engine, "job:precompute", world.var_dir / "locks") as held:
        assert held
        with pytest.raises(JobConflictError, match="already running"):
            run_exclusive(context, "precompute", {}, refused)
    # A refused start records nothing (issue 14: refused starts write no row).
    assert get_run(world.engine, refused) is None


@pytest.mark.integration
@pytest.mark.slow
def test_the_api_refuses_a_second_job_of_a_kind_and_fails_an_unsent_one(world: World) -> None:
    # Nothing listens on port 1: the conflict is found before sending, the send then fails.
    settings = world.settings("redis://127.0.0.1:1/0")
    runner = JobRunner(
        JobContext(world.engine, settings, ModelRegistry.from_settings(settings)),
        after=lambda _kind: None,
    )
    waiting = str(uuid.uuid4())
    queue_run(world.engine, "training", waiting)
    try:
        # A domain error now; the API answers it with 409 (tests/integration/test_job_locks.py).
        with pytest.raises(JobConflictError, match=waiting):
            runner.start("training", {}, "test")
        fail_run(world.engine, waiting, "test over")

        with pytest.raises(BackendUnavailableError, match="NEXTOFFER_BROKER_URL"):
            runner.start("training", {}, "test")
        with world.engine.connect() as conn:
            unsent = conn.execute(
                select(JobRun).where(JobRun.job == "training").order_by(JobRun.started_at.desc())
            ).first()
        assert unsent is not None and unsent.run_id != waiting
        assert unsent.status == "failed" and "not sent to the broker" in (unsent.message or "")
    finally:
        fail_run(world.engine, waiting, "test over")
        runner.shutdown()


def test_recorded_run_takes_over_a_queued_or_failed_row(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    run_id = str(uuid.uuid4())
    queue_run(engine, "precompute", run_id)
    queued = get_run(engine, run_id)
    assert queued is not None and queued.status == "queued"
    with recorded_run(engine, "precompute", run_id) as run:
        assert get_run(engine, run_id).status == "running"  # type: ignore[union-attr]
        run.counts = {"customers": 3}
    # A retried attempt restarts the same row.
    fail_run(engine, run_id, "lost")
    with recorded_run(engine, "precompute", run_id) as run:
        run.counts = {"customers": 4}
    with engine.connect() as conn:
        rows = conn.execute(select(JobRun).where(JobRun.run_id == run_id)).all()
    assert len(rows) == 1
    assert rows[0].status == "succeeded" and rows[0].counts == {"customers": 4}
    assert rows[0].message is None
    engine.dispose()


def test_try_lock_is_exclusive_until_released(database_url: str, tmp_path: Path) -> None:
    engine = make_engine(database_url)
    with try_lock(engine, "job:x", tmp_path) as first:
        assert first
        with try_lock(engine, "job:x", tmp_path) as second:
            assert not second
        with try_lock(engine, "job:y", tmp_path) as other:
            assert other
    with try_lock(engine, "job:x", tmp_path) as again:
        assert again
    engine.dispose()
