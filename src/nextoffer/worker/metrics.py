"""A worker's Prometheus metrics: tasks by state, durations, active tasks, queue lengths.

The pool processes are forked from the worker's main process, so counters live in
prometheus_client's multiprocess files (`PROMETHEUS_MULTIPROC_DIR`, set here before the
metrics are made) and the main process serves the merged view on its own port.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from celery import Celery, signals

from nextoffer.domain.errors import ConfigError

log = logging.getLogger(__name__)

DURATION_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800, 3600, 4 * 3600)


def start_worker_metrics(app: Celery, port: int, directory: Path) -> None:
    """Count this worker's tasks and serve them, with queue lengths, on `port` (/metrics).

    Call in the worker's main process before the pool starts.
    """
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    # Imported only now: prometheus_client picks its value store (files, for every forked
    # pool process) when it is first imported, from the variable just set.
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
    from prometheus_client import start_http_server as serve

    tasks = Counter(
        "nextoffer_celery_tasks_total",
        "Celery tasks finished, by task name and state (succeeded, failed, retried).",
        ["task", "state"],
    )
    duration = Histogram(
        "nextoffer_celery_task_duration_seconds",
        "Celery task run time, by task name.",
        ["task"],
        buckets=DURATION_BUCKETS,
    )
    active = Gauge(
        "nextoffer_celery_active_tasks",
        "Celery tasks running now on this worker.",
        multiprocess_mode="livesum",
    )
    started: dict[str, float] = {}

    def on_prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
        started[task_id or ""] = time.perf_counter()
        active.inc()

    def on_postrun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
        active.dec()
        begun = started.pop(task_id or "", None)
        if begun is not None and task is not None:
            duration.labels(task.name).observe(time.perf_counter() - begun)

    def on_success(sender: Any = None, **_: Any) -> None:
        tasks.labels(getattr(sender, "name", "unknown"), "succeeded").inc()

    def on_failure(sender: Any = None, **_: Any) -> None:
        tasks.labels(getattr(sender, "name", "unknown"), "failed").inc()

    def on_retry(sender: Any = None, **_: Any) -> None:
        tasks.labels(getattr(sender, "name", "unknown"), "retried").inc()

    def on_process_exit(pid: int | None = None, **_: Any) -> None:
        # A pool process that ends takes its share of the live gauge with it.
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    for signal, receiver in (
        (signals.task_prerun, on_prerun),
        (signals.task_postrun, on_postrun),
        (signals.task_success, on_success),
        (signals.task_failure, on_failure),
        (signals.task_retry, on_retry),
        (signals.worker_process_shutdown, on_process_exit),
    ):
        signal.connect(receiver, weak=False)

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    registry.register(QueueLengthCollector(app))
    try:
        serve(port, registry=registry)
    except OSError as exc:
        raise ConfigError(
            f"NEXTOFFER_WORKER_METRICS_PORT: cannot listen on port {port} ({exc.strerror}); "
            "give each worker on a host its own port, or 0 to turn the endpoint off"
        ) from None
    log.info("worker metrics on :%d/metrics", port, extra={"port": port})


class QueueLengthCollector:
    """`nextoffer_celery_queue_length{queue}`: messages waiting, asked of the broker per scrape."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def describe(self) -> Iterable[Any]:
        """No fixed description: the values are read when scraped."""
        return []

    def collect(self) -> Iterable[Any]:
        """One sample per queue; none when the broker cannot be reached."""
        from prometheus_client.core import GaugeMetricFamily

        from nextoffer.jobs.catalogue import QUEUES

        family = GaugeMetricFamily(
            "nextoffer_celery_queue_length",
            "Messages waiting in each Celery queue.",
            labels=["queue"],
        )
        try:
            with self.app.connection_for_read() as conn:
                for queue in QUEUES:
                    family.add_metric([queue], float(_waiting(conn, queue)))
        except Exception as exc:  # a dead broker must not break the scrape
            log.warning("queue lengths unavailable: %s", exc)
            return
        yield family


def _waiting(conn: Any, queue: str) -> int:
    """Messages waiting in `queue`; a queue the broker does not know holds none."""
    from amqp.exceptions import ChannelError

    # A channel per queue: an AMQP error closes the channel it happened on.
    with conn.channel() as channel:
        try:
            # Passive: asks for the count without creating or changing the queue.
            return int(channel.queue_declare(queue=queue, passive=True).message_count)
        except ChannelError as exc:
            if str(getattr(exc, "reply_code", "")) != "404":
                raise
            # Redis keeps a queue as a list, which exists only while it holds messages.
            return 0
