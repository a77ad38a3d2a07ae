"""The Celery app's configuration and the worker command's refusals, without a broker."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from nextoffer.cli import app as cli
from nextoffer.config import Settings
from nextoffer.domain.errors import ConfigError
from nextoffer.jobs.broker import (
    PRECOMPUTE_CHUNK,
    REDIS_VISIBILITY_TIMEOUT_S,
    RUN_JOB,
    route_task,
    settings_of,
    time_limits,
)
from nextoffer.worker.app import check_worker_queues, make_celery


def test_redis_broker_keeps_results_in_the_same_redis() -> None:
    settings = Settings(broker_url="redis://127.0.0.1:6379/3")
    app = make_celery(settings)
    conf = app.conf
    assert conf.broker_url == conf.result_backend == "redis://127.0.0.1:6379/3"
    # A task is acknowledged when it ends: Redis must not hand a running one out again.
    assert conf.broker_transport_options["visibility_timeout"] == REDIS_VISIBILITY_TIMEOUT_S
    assert max(time_limits(q)[1] for q in ("training", "ops")) < REDIS_VISIBILITY_TIMEOUT_S
    assert {q.name for q in conf.task_queues} == {"etl", "training", "precompute", "ops"}
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_acks_late and conf.task_reject_on_worker_lost and conf.task_track_started
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    assert conf.broker_connection_retry_on_startup
    assert settings_of(app) is settings
    for name in (RUN_JOB, PRECOMPUTE_CHUNK):
        # Idempotent tasks, so a database that drops out is waited for and the task rerun.
        task = app.tasks[name]
        assert task.autoretry_for == (OperationalError,)
        assert task.retry_backoff is True and task.max_retries == 5


def test_amqp_broker_sends_results_back_over_rpc() -> None:
    conf = make_celery(Settings(broker_url="amqp://guest:guest@127.0.0.1:5672//")).conf
    assert conf.result_backend == "rpc://"
    assert not conf.broker_transport_options


@pytest.mark.parametrize(
    ("url", "message"),
    [("", "NEXTOFFER_BROKER_URL is empty"), ("http://h/", "use redis://… or amqp://…")],
)
def test_a_missing_or_unknown_broker_is_one_clear_error(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_celery(Settings(broker_url=url))


def test_routes_send_the_precompute_coordinator_and_its_chunks_to_different_queues() -> None:
    assert route_task(RUN_JOB, ["etl", {}, "id"], {}, {}) == {"queue": "etl"}
    assert route_task(RUN_JOB, ["training", {}, "id"], {}, {}) == {"queue": "training"}
    assert route_task(RUN_JOB, [], {"kind": "precompute"}, {}) == {"queue": "ops"}
    assert route_task(PRECOMPUTE_CHUNK, ["a", "b", 1, "t", 1], {}, {}) == {"queue": "precompute"}
    assert route_task("celery.ping", [], {}, {}) is None
    assert time_limits("training") == (4 * 3600 - 300, 4 * 3600)
    assert time_limits("precompute") == (3600 - 300, 3600)


def test_a_worker_that_could_deadlock_is_refused() -> None:
    check_worker_queues(["ops", "precompute"], 2)
    check_worker_queues(["precompute"], 1)
    check_worker_queues(["ops", "etl"], 1)
    with pytest.raises(ConfigError, match="--concurrency must be 2 or more"):
        check_worker_queues(["etl", "training", "precompute", "ops"], 1)
    with pytest.raises(ConfigError, match="unknown nightly"):
        check_worker_queues(["etl", "nightly"], 2)


def test_worker_command_without_a_broker_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXTOFFER_BROKER_URL", "")
    result = CliRunner().invoke(cli, ["worker"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "NEXTOFFER_BROKER_URL is empty" in lines[0], result.output


def test_the_api_offers_exactly_the_jobs_of_the_catalogue() -> None:
    from typing import get_args

    from nextoffer.api.schemas import JobIn
    from nextoffer.jobs.catalogue import ALL_KINDS

    assert set(get_args(JobIn.model_fields["kind"].annotation)) == set(ALL_KINDS)
