"""The Celery app a job is sent with: broker, queues, routes, time limits from the catalogue.

Everything needed to SEND a job to a worker lives here, so that the API, the console and
the CLI never import the worker. The worker process builds on the same app
(`nextoffer.worker.app` adds beat's schedule, logging and the tasks themselves).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from nextoffer.cache.base import same_redis_database
from nextoffer.config import Settings
from nextoffer.domain.errors import ConfigError
from nextoffer.jobs.catalogue import JOBS, QUEUE_LIMITS_S, QUEUES, job_queue, job_spec, time_limits

BROKER_SETTING = "NEXTOFFER_BROKER_URL"

# Task names: what a message asks a worker to run (nextoffer.worker.tasks defines them).
RUN_JOB = "nextoffer.run_job"
PRECOMPUTE_CHUNK = "nextoffer.precompute_chunk"
RUN_SCHEDULED = "nextoffer.run_scheduled"

# Redis hands an unacknowledged message to another worker after this long. With late acks a
# task is acknowledged when it ends, so this must outlast the longest task, or a long
# training would be started a second time while the first still runs.
REDIS_VISIBILITY_TIMEOUT_S = (
    max(max(QUEUE_LIMITS_S.values()), *(spec.hard_limit_s for spec in JOBS.values())) + 600
)

__all__ = [
    "BROKER_SETTING",
    "PRECOMPUTE_CHUNK",
    "QUEUES",
    "REDIS_VISIBILITY_TIMEOUT_S",
    "RUN_JOB",
    "RUN_SCHEDULED",
    "broker_kind",
    "check_separate_redis",
    "job_queue",
    "job_signature",
    "make_celery",
    "route_task",
    "send_job",
    "settings_of",
    "time_limits",
]


def broker_kind(broker_url: str) -> str:
    """'redis' or 'amqp' for a broker URL; anything else is a ConfigError."""
    scheme = broker_url.split("://", 1)[0].lower() if "://" in broker_url else ""
    if not broker_url:
        raise ConfigError(
            f"{BROKER_SETTING} is empty: set it to redis://host:6379/0 or "
            "amqp://user:password@host:5672// to run background jobs on workers"
        )
    if scheme in ("redis", "rediss"):
        return "redis"
    if scheme in ("amqp", "amqps", "pyamqp"):
        return "amqp"
    raise ConfigError(f"{BROKER_SETTING}: use redis://… or amqp://…, got a {scheme!r} URL")


def route_task(
    name: str, args: Sequence[Any], kwargs: Mapping[str, Any], options: Any, task: Any = None
) -> dict[str, str] | None:
    """Celery router: chunks to `precompute`, a job to its queue, beat's firings to `ops`."""
    if name == PRECOMPUTE_CHUNK:
        return {"queue": "precompute"}
    if name == RUN_SCHEDULED:
        return {"queue": "ops"}
    if name == RUN_JOB:
        kind = args[0] if args else kwargs.get("kind", "")
        return {"queue": job_queue(str(kind))}
    return None


def check_separate_redis(settings: Settings) -> None:
    """Refuse a cache and a broker in one Redis database: cache eviction would drop tasks."""
    if same_redis_database(settings.cache_url, settings.broker_url):
        raise ConfigError(
            "NEXTOFFER_CACHE_URL and NEXTOFFER_BROKER_URL point at the same Redis database: "
            "the cache evicts keys under memory pressure and would drop queued tasks; use "
            "another database number or (better) another Redis with maxmemory-policy noeviction"
        )


def make_celery(settings: Settings) -> Celery:
    """A Celery app for `settings.broker_url` that can send jobs; connects to nothing yet."""
    kind = broker_kind(settings.broker_url)
    check_separate_redis(settings)
    soft, hard = time_limits("ops")
    app = Celery("nextoffer", set_as_current=False)
    app.conf.update(
        broker_url=settings.broker_url,
        # rpc:// sends each result back to the caller over the broker; Redis keeps them.
        result_backend=settings.broker_url if kind == "redis" else "rpc://",
        task_queues=[
            Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES
        ],
        task_default_queue="ops",
        task_routes=(route_task,),
        # One message at a time per process, acknowledged when the task ends: a task whose
        # worker dies is given to another worker, never lost, and no process hoards work.
        worker_prefetch_multiplier=1,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_track_started=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_time_limit=hard,
        task_soft_time_limit=soft,
        broker_connection_retry_on_startup=True,
        # Crontabs in UTC (the seed's 02:00 / Sunday 03:00 are UTC).
        timezone="UTC",
        enable_utc=True,
    )
    if kind == "redis":
        app.conf.broker_transport_options = {
            "visibility_timeout": settings.worker_visibility_timeout_s or REDIS_VISIBILITY_TIMEOUT_S
        }
    app.nextoffer_settings = settings
    return app


def settings_of(app: Celery) -> Settings:
    """The Settings an app was made from."""
    settings = getattr(app, "nextoffer_settings", None)
    if not isinstance(settings, Settings):
        raise ConfigError("this Celery app was not made by nextoffer.jobs.broker.make_celery")
    return settings


def job_signature(app: Celery, kind: str, params: Mapping[str, Any], run_id: str) -> Any:
    """The message that runs job `kind` under `run_id` on its queue, with its time limits."""
    spec = job_spec(kind)
    return app.signature(
        RUN_JOB,
        args=[kind, dict(params), run_id],
        queue=spec.queue,
        soft_time_limit=spec.soft_limit_s,
        time_limit=spec.hard_limit_s,
        immutable=True,
        # The job_runs row is the record; a result nobody reads would pile up on the broker.
        ignore_result=True,
    )


def send_job(app: Celery, kind: str, params: Mapping[str, Any], run_id: str) -> None:
    """Queue job `kind` for a worker, under `run_id` (the id its job_runs row will have)."""
    job_signature(app, kind, params, run_id).apply_async()
