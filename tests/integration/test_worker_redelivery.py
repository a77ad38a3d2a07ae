"""A worker killed mid-task: the broker hands the task to the next worker, and the end is exact.

The ETL job commits its input in blocks. The worker running it is killed with SIGKILL only
once the database holds at least one committed block; its unacknowledged message (late acks)
goes back to the queue — at once on RabbitMQ, after the visibility timeout (shortened here)
on Redis — and a fresh worker runs it again under the same run id. The final database must
equal one clean ingest: nothing missing, nothing twice.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from nextoffer.config import Settings
from nextoffer.ingest.sources import entity_for
from nextoffer.jobs.broker import send_job
from nextoffer.pipelines.etl import run_ingest
from nextoffer.store.engine import make_engine
from nextoffer.store.migrate import upgrade
from nextoffer.store.runs import get_run
from nextoffer.store.schema import Base, JobRun
from nextoffer.worker.app import make_celery
from tests.e2e.server import NEXTOFFER, free_port
from tests.helpers import clear_database, dump_all, wait_until, write_world
from tests.integration.test_worker import _rabbitmq, _redis

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VISIBILITY_TIMEOUT_S = 4


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest) -> Iterator[str]:
    """A broker URL on an empty Redis database or RabbitMQ vhost."""
    yield from {"redis": _redis, "rabbitmq": _rabbitmq}[request.param]()


def count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(select(func.count()).select_from(Base.metadata.tables[table])).scalar_one()
        )


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [NEXTOFFER, "worker", "--queues", "etl", "--concurrency", "1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def test_a_killed_workers_task_is_redelivered_and_ends_exact(
    broker: str, postgres_url: str, tmp_path: Path
) -> None:
    world = write_world(
        tmp_path / "world",
        customers=150,
        transactions_per_customer=3,
        events_per_customer=40,
        bad_every=53,
    )
    biggest = max(world.root.glob("*.csv"), key=lambda p: p.stat().st_size)
    entity = entity_for(biggest)
    assert entity is not None
    engine = make_engine(postgres_url)
    upgrade(engine)

    # The reference: one clean ingest of the same files.
    reference = run_ingest(
        engine, Settings(database_url=postgres_url, var_dir=tmp_path / "ref"), world.root
    )
    expected = dump_all(engine)
    full = count(engine, entity.name)
    clear_database(engine)

    var_dir = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXTOFFER_")}
    env.update(
        NEXTOFFER_DATABASE_URL=postgres_url,
        NEXTOFFER_VAR_DIR=str(var_dir),
        NEXTOFFER_REGISTRY_URI=f"sqlite:///{var_dir / 'mlflow.db'}",
        NEXTOFFER_ARTIFACTS_URL=f"file://{var_dir / 'artifacts'}",
        NEXTOFFER_BROKER_URL=broker,
        NEXTOFFER_WORKER_VISIBILITY_TIMEOUT_S=str(VISIBILITY_TIMEOUT_S),
        # Small blocks: the biggest file takes about a hundred commits.
        NEXTOFFER_INGEST_BLOCK_BYTES="4096",
        NEXTOFFER_WORKER_METRICS_PORT=str(free_port()),
        NEXTOFFER_LOG_LEVEL="INFO",
    )
    log = tmp_path / "workers.log"
    first = start_worker(env, log)
    second: subprocess.Popen[bytes] | None = None
    app = make_celery(Settings(broker_url=broker, worker_visibility_timeout_s=VISIBILITY_TIMEOUT_S))
    run_id = str(uuid.uuid4())
    try:
        send_job(app, "etl", {"path": str(world.root)}, run_id)

        def a_block_is_committed() -> bool:
            assert first.poll() is None, log.read_text()[-3000:]
            return count(engine, entity.name) > 0

        wait_until(
            a_block_is_committed,
            120,
            f"a committed block\n{log.read_text()[-3000:]}",
            every_s=0.01,
        )
        stop(first, signal.SIGKILL)

        # It died in the middle: part of the file stored, the run never finished.
        partial = count(engine, entity.name)
        assert 0 < partial < full, (partial, full)
        killed = get_run(engine, run_id)
        assert killed is not None and killed.status == "running"

        env["NEXTOFFER_INGEST_BLOCK_BYTES"] = str(64 * 1024)
        env["NEXTOFFER_WORKER_METRICS_PORT"] = str(free_port())
        second = start_worker(env, log)

        def finished() -> bool:
            assert second is not None and second.poll() is None, log.read_text()[-3000:]
            run = get_run(engine, run_id)
            return run is not None and run.status in ("succeeded", "failed")

        wait_until(finished, 180, f"the redelivered run\n{log.read_text()[-3000:]}", every_s=0.01)
        run = get_run(engine, run_id)
        assert run is not None and run.status == "succeeded", run.message
        # Exactly one clean ingest's worth: no row missing, none twice, quarantine the same.
        assert dump_all(engine) == expected
        assert run.counts["rows_loaded"] == reference.rows_loaded
        assert run.counts["rows_quarantined"] == reference.rows_quarantined
        with engine.connect() as conn:
            runs = conn.execute(select(JobRun.run_id).where(JobRun.job == "etl")).scalars().all()
        assert runs == [run_id]  # one job, one record, taken over by the second worker
    finally:
        app.close()
        for process in (first, second):
            if process is not None and process.poll() is None:
                stop(process)
        engine.dispose()
