"""Precompute fan-out: one Celery task per chunk, gathered by a coordinator as they finish."""

# Why a coordinator that waits for its chunks cannot deadlock a worker
# -------------------------------------------------------------------
# The precompute job (`nextoffer.run_job` with kind precompute) is the only task that waits
# for other tasks. It runs on the `ops` queue and its chunks on `precompute`, and:
#
# 1. At most one precompute coordinator runs at a time, anywhere: the job holds a lock for
#    its whole run (a PostgreSQL advisory lock, released if its process dies; see
#    nextoffer.jobs.runner `run_exclusive`). A second one is refused at once, is
#    acknowledged, and so never holds a process while waiting.
# 2. Every other task (chunks, etl, training) waits for nothing and ends within its time
#    limit.
# 3. A worker reserves at most `concurrency` messages (prefetch multiplier 1, late acks)
#    and the prefork pool gives a task only to an idle process (fair scheduling, which
#    `nextoffer worker` sets and Celery 5 defaults to). With concurrency >= 2 the
#    coordinator holds one process; the other processes run whatever is reserved, each
#    ends (2.), and then the next message, a chunk sooner or later, is taken. So chunks
#    always progress, even on one worker consuming every queue.
#
# The coordinator waits in this process (results come through the result backend, not the
# worker's reserved messages), which is why `allow_join_result` is right here. With
# concurrency 1 on both `ops` and `precompute` the coordinator would hold the only process;
# `nextoffer worker` refuses that (check_worker_queues). A worker that consumes only
# `precompute` never takes a coordinator, so any concurrency works there. The CLI's
# `nextoffer precompute` coordinates in its own process and fans out the same way.

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from celery import Celery, group, states
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import AsyncResult, ResultSet, allow_join_result

from nextoffer.domain.errors import BackendUnavailableError, NextOfferError
from nextoffer.jobs.broker import BROKER_SETTING, PRECOMPUTE_CHUNK, time_limits
from nextoffer.jobs.context import JobContext
from nextoffer.pipelines.precompute import Chunk, ChunkRunner

if TYPE_CHECKING:
    from nextoffer.platform import Platform

log = logging.getLogger(__name__)

# A chunk is killed after its hard limit, so a whole such span with no chunk finishing
# means none is being worked on: no worker consumes `precompute`, or all are busy.
STALL_S = time_limits("precompute")[1] + 60


def job_context(app: Celery, platform: Platform) -> JobContext:
    """The context of a job whose precompute chunks run as tasks of `app`."""
    return platform.job_context(fan_out=functools.partial(chunk_runner, app))


def chunk_runner(app: Celery, model_version: int, uplift_version: int | None = None) -> ChunkRunner:
    """Run each chunk as a `nextoffer.precompute_chunk` task scoring with `model_version`.

    `uplift_version` is the uplift model that ranks retention offers (None: not ranked by
    uplift), fixed by the coordinator so that every chunk of a run uses the same one.
    """

    def run(chunks: list[Chunk], computed_at: datetime) -> Iterator[tuple[int, int]]:
        if not chunks:
            return
        at = computed_at.isoformat()
        soft, hard = time_limits("precompute")
        tasks = group(
            [
                app.signature(
                    PRECOMPUTE_CHUNK,
                    args=(c.first, c.last, c.customers, at, model_version, uplift_version),
                    queue="precompute",
                    soft_time_limit=soft,
                    time_limit=hard,
                )
                for c in chunks
            ],
            app=app,
        )
        # Inside a worker Celery forbids waiting for results, to stop tasks that wait on
        # their own queue; the argument at the top of this module is why this one may.
        # Sending in here too makes the rpc:// backend declare this process's reply queue
        # before any chunk can answer.
        with allow_join_result():
            try:
                sent = tasks.apply_async()
            except Exception as exc:
                # kombu's connection errors, or Celery's when the Redis result store is
                # down: either way nothing was started, and the run fails with one line.
                detail = " ".join(f"{type(exc).__name__}: {exc}".split())
                raise BackendUnavailableError(BROKER_SETTING, "the job broker", detail) from None
            log.info(
                "precompute: %d chunks sent to the precompute queue",
                len(chunks),
                extra={"chunks": len(chunks), "computed_at": at, "pid": os.getpid()},
            )
            remaining = {r.id: c for r, c in zip(sent.results, chunks, strict=True)}
            try:
                yield from _gather(app, list(sent.results), remaining)
            finally:
                if remaining:
                    _revoke(app, list(remaining))

    return run


def _revoke(app: Celery, task_ids: list[str]) -> None:
    """A failed or abandoned run: its chunks not yet started need not run (best effort).

    Left alone they would only redo their ranges with the same version and instant.
    """
    try:
        app.control.revoke(task_ids)
    except Exception:
        # Never hide why the run failed behind a broker that cannot take the revoke.
        log.warning("could not revoke %d precompute chunks", len(task_ids), exc_info=True)


def _gather(
    app: Celery, results: list[AsyncResult], remaining: dict[str, Chunk]
) -> Iterator[tuple[int, int]]:
    """Yield each chunk's counts as it finishes; fail on a failed chunk or a stall."""
    while remaining:
        pending = ResultSet([r for r in results if r.id in remaining], app=app)
        finished = 0
        try:
            for task_id, meta in pending.iter_native(timeout=STALL_S):
                chunk = remaining.pop(task_id)
                finished += 1
                if meta["status"] != states.SUCCESS:
                    raise NextOfferError(
                        f"precompute chunk {chunk.first}..{chunk.last} failed "
                        f"({meta['status']}): {meta['result']!r}"
                    )
                customers, with_offers = meta["result"]
                yield int(customers), int(with_offers)
        except CeleryTimeoutError:
            # The wait is per call; progress in this window restarts it for the rest.
            if not finished:
                raise NextOfferError(
                    f"no precompute chunk finished in {STALL_S} s: is a worker consuming "
                    "the precompute queue (`nextoffer worker`), and not busy with long jobs?"
                ) from None
