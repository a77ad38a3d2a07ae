"""The Celery app built from Settings: queues, routes, limits; `celery -A nextoffer.worker.app`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from celery import Celery, signals
from kombu import Exchange, Queue

from nextoffer.cache.base import same_redis_database
from nextoffer.config import Settings
from nextoffer.domain.errors import ConfigError
from nextoffer.observe.logs import configure_logging
from nextoffer.worker.schedule import RUN_SCHEDULED, beat_schedule

BROKER_SETTING = "NEXTOFFER_BROKER_URL"

RUN_JOB = "nextoffer.run_job"
PRECOMPUTE_CHUNK = "nextoffer.precompute_chunk"

QUEUES = ("etl", "training", "precompute", "ops")
# The precompute job is a coordinator that waits for its chunks, so it runs on `ops` and
# its chunks on `precompute` (see worker/fanout.py for why this cannot deadlock).
JOB_QUEUES = {"etl": "etl", "training": "training", "precompute": "ops"}
# Hard limits in seconds; a task gets a soft limit (an exception it can record) 5 min before.
TIME_LIMITS_S = {"etl": 3600, "training": 4 * 3600, "precompute": 3600, "ops": 3600}
SOFT_MARGIN_S = 300
# Redis hands an unacknowledged message to another worker after this long. With late acks a
# task is acknowledged when it ends, so this must outlast the longest task, or a long
# training would be started a second time while the first still runs.
REDIS_VISIBILITY_TIMEOUT_S = max(TIME_LIMITS_S.values()) + 600


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


def job_queue(kind: str) -> str:
    """The queue a job of `kind` runs on."""
    return JOB_QUEUES.get(kind, "ops")


def time_limits(queue: str) -> tuple[int, int]:
    """(soft, hard) time limits in seconds for a task on `queue`."""
    hard = TIME_LIMITS_S.get(queue, TIME_LIMITS_S["ops"])
    return hard - SOFT_MARGIN_S, hard


def route_task(
    name: str, args: Sequence[Any], kwargs: Mapping[str, Any], options: Any, task: Any = None
) -> dict[str, str] | None:
    """Celery router: chunks to `precompute`, a job to the queue of its kind."""
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
    """A Celery app for `settings.broker_url`; connects to nothing until used."""
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
        # Beat: crontabs in UTC (the seed's 02:00 / Sunday 03:00 are UTC), entries from
        # settings, its state file in the writable var folder.
        timezone="UTC",
        enable_utc=True,
        beat_schedule=beat_schedule(settings),
        beat_schedule_filename=str(settings.var_dir / "celerybeat-schedule"),
        # Beat answers `celery inspect ping`, which is its container's health check.
        beat_enable_remote_control=True,
        # Our JSON-lines logging (setup_logging below), not Celery's own format.
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )
    if kind == "redis":
        app.conf.broker_transport_options = {
            "visibility_timeout": settings.worker_visibility_timeout_s or REDIS_VISIBILITY_TIMEOUT_S
        }
    app.nextoffer_settings = settings

    def json_logging(**_kwargs: Any) -> None:
        configure_logging(settings.log_level, json_lines=settings.log_json)

    # A worker logs like every other nextoffer process: JSON lines at NEXTOFFER_LOG_LEVEL.
    # Any receiver of this signal stops Celery from setting up its own logging; one per
    # process is enough (a worker runs one app).
    signals.setup_logging.connect(json_logging, weak=False, dispatch_uid=__name__)
    # Registers the tasks on this app (shared tasks attach to every app when it finalizes).
    from nextoffer.worker import tasks  # noqa: F401

    return app


def settings_of(app: Celery) -> Settings:
    """The Settings an app was made from."""
    settings = getattr(app, "nextoffer_settings", None)
    if not isinstance(settings, Settings):
        raise ConfigError("this Celery app was not made by nextoffer.worker.app.make_celery")
    return settings


def job_signature(app: Celery, kind: str, params: Mapping[str, Any], run_id: str) -> Any:
    """The message that runs job `kind` under `run_id` on its queue, with its time limits."""
    queue = job_queue(kind)
    soft, hard = time_limits(queue)
    return app.signature(
        RUN_JOB,
        args=[kind, dict(params), run_id],
        queue=queue,
        soft_time_limit=soft,
        time_limit=hard,
        immutable=True,
        # The job_runs row is the record; a result nobody reads would pile up on the broker.
        ignore_result=True,
    )


def send_job(app: Celery, kind: str, params: Mapping[str, Any], run_id: str) -> None:
    """Queue job `kind` for a worker, under `run_id` (the job_runs row of the run)."""
    job_signature(app, kind, params, run_id).apply_async()


def check_worker_queues(queues: Sequence[str], concurrency: int) -> None:
    """Refuse a worker that could deadlock: see worker/fanout.py."""
    unknown = sorted(set(queues) - set(QUEUES))
    if unknown or not queues:
        what = f"unknown {', '.join(unknown)}" if unknown else "none given"
        raise ConfigError(f"--queues: {what}; the queues are {', '.join(QUEUES)}")
    if concurrency < 2 and "ops" in queues and "precompute" in queues:
        raise ConfigError(
            "--concurrency must be 2 or more for a worker on both the ops and precompute "
            "queues: a precompute job waits for its chunks, which need a second process"
        )


_default: Celery | None = None


def __getattr__(name: str) -> Any:
    """`app` for `celery -A nextoffer.worker.app`: built from the environment on first use.

    Lazy, so that importing make_celery neither reads the environment nor needs a broker.
    """
    global _default
    if name in ("app", "celery"):
        if _default is None:
            _default = make_celery(Settings())
        return _default
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
