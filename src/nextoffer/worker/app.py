"""The worker's Celery app: the sending app plus beat's schedule, logging and the tasks.

`celery -A nextoffer.worker.app worker|beat` and `nextoffer worker|beat` run it. What a
sender needs (queues, routes, time limits) is nextoffer.jobs.broker's; this module only
adds what a worker or beat process needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import Celery, signals

from nextoffer.config import Settings
from nextoffer.domain.errors import ConfigError
from nextoffer.jobs import broker
from nextoffer.jobs.catalogue import QUEUES
from nextoffer.observe.logs import configure_logging

# Imported for its effect: the tasks attach to every nextoffer Celery app made after this
# (shared tasks), so a worker made here can run them.
from nextoffer.worker import tasks  # noqa: F401
from nextoffer.worker.schedule import beat_schedule


def make_celery(settings: Settings) -> Celery:
    """The worker's (or beat's) Celery app for `settings`; connects to nothing until used."""
    app = broker.make_celery(settings)
    app.conf.update(
        # Beat: entries from settings, its state file in the writable var folder.
        beat_schedule=beat_schedule(settings),
        beat_schedule_filename=str(settings.var_dir / "celerybeat-schedule"),
        # Beat answers `celery inspect ping`, which is its container's health check.
        beat_enable_remote_control=True,
        # Our JSON-lines logging (setup_logging below), not Celery's own format.
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )

    def json_logging(**_kwargs: Any) -> None:
        configure_logging(settings.log_level, json_lines=settings.log_json)

    # A worker logs like every other nextoffer process: JSON lines at NEXTOFFER_LOG_LEVEL.
    # Any receiver of this signal stops Celery from setting up its own logging; one per
    # process is enough (a worker runs one app).
    signals.setup_logging.connect(json_logging, weak=False, dispatch_uid=__name__)
    return app


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
