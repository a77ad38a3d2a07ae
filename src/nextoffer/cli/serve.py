"""`nextoffer precompute`, `worker`, `beat`, `serve` and `quickstart`: running the product."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from nextoffer.cli.common import (
    celery_app,
    console,
    err_console,
    handles_errors,
    load_settings,
    open_platform,
)
from nextoffer.cli.data import db_upgrade, features, generate, ingest
from nextoffer.cli.models import train
from nextoffer.cli.stages import StageClock, answer_url, wait_for_first_answer
from nextoffer.config import Settings
from nextoffer.domain.errors import ConfigError
from nextoffer.domain.roles import Role
from nextoffer.serving.weak_secrets import refuse_insecure_secrets
from nextoffer.store import migrate
from nextoffer.store.engine import wait_for_database


@handles_errors
def precompute() -> None:
    """Score every customer's offers with the champion into the precomputed table.

    With NEXTOFFER_BROKER_URL set, the chunks run as tasks on the workers
    (`nextoffer worker`) and this command gathers them.
    """
    from nextoffer.jobs.runner import run_exclusive

    settings = load_settings()
    platform = open_platform(settings)
    wait_for_database(platform.engine, settings.db_wait_timeout_s)
    with err_console.status("precomputing offers"):
        if settings.broker_url:
            from nextoffer.jobs.dispatch import open_broker

            sender = open_broker(settings)  # Celery installed, a usable broker URL
            from nextoffer.worker.fanout import job_context

            context = job_context(sender, platform)
        else:
            context = platform.job_context()
        # The job lock: no second precompute (CLI, API or worker) runs at the same time.
        counts = run_exclusive(context, "precompute")
    console.print(
        f"precompute: {counts['customers']:,} customers ({counts['with_offers']:,} with offers) "
        f"in {counts['chunks']} chunks with offers {counts['model_version']}",
        highlight=False,
    )


@handles_errors
def worker(
    queues: Annotated[
        str, typer.Option(help="comma-separated queues to consume")
    ] = "etl,training,precompute,ops",
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="worker processes (default: one per CPU core, at least 2)"),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=0, help="port of /metrics (default NEXTOFFER_WORKER_METRICS_PORT; 0: off)"
        ),
    ] = None,
) -> None:
    """Run a Celery worker for background jobs (needs NEXTOFFER_BROKER_URL).

    Queues: etl and training (those jobs), ops (the precompute job, which fans its chunks
    out), precompute (the chunks). A worker on both ops and precompute needs
    --concurrency 2 or more. For Celery's other options run
    `celery -A nextoffer.worker.app worker ...` with the same environment.
    """
    import os

    from nextoffer.worker.app import check_worker_queues

    settings = load_settings()
    refuse_insecure_secrets(settings)
    celery = celery_app(settings)
    names = [q.strip() for q in queues.split(",") if q.strip()]
    processes = concurrency or max(2, os.cpu_count() or 2)
    check_worker_queues(names, processes)
    port = settings.worker_metrics_port if metrics_port is None else metrics_port
    if port:
        import socket

        from nextoffer.worker.metrics import start_worker_metrics

        # Host name and pid: replicas sharing the var volume often have the same pid.
        folder = f"prometheus-worker-{socket.gethostname()}-{os.getpid()}"
        start_worker_metrics(celery, port, settings.var_dir / folder)
    err_console.print(
        f"worker: queues {', '.join(names)} · {processes} processes"
        + (f" · metrics on :{port}" if port else ""),
        highlight=False,
    )
    # Fair scheduling (the default, stated): a task goes only to an idle pool process, which
    # the no-deadlock argument of the precompute fan-out relies on (worker/fanout.py).
    celery.worker_main(
        [
            "worker",
            f"--queues={','.join(names)}",
            f"--concurrency={processes}",
            "--optimization=fair",
            "--without-gossip",
        ]
    )


@handles_errors
def beat() -> None:
    """Run Celery beat: the schedule of nightly ETL, retraining, backups and refreshes.

    Run exactly one. Times are crontabs in UTC from NEXTOFFER_*_CRON; with
    NEXTOFFER_SCHEDULER=airflow it runs idle (Airflow's DAGs are in charge).
    """
    from nextoffer.worker.schedule import ENTRIES

    settings = load_settings()
    refuse_insecure_secrets(settings)
    celery = celery_app(settings)
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    if settings.scheduler != "celery":
        err_console.print(
            f"beat: idle — NEXTOFFER_SCHEDULER={settings.scheduler} is in charge", highlight=False
        )
    else:
        for entry in ENTRIES:
            cron = getattr(settings, entry.setting)
            err_console.print(
                f"beat: {entry.name:<18} {cron:<14} UTC  {' → '.join(entry.jobs)}", highlight=False
            )
    celery.Beat(loglevel=settings.log_level).run()


@handles_errors
def serve(
    host: Annotated[str | None, typer.Option(help="address (default NEXTOFFER_API_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default NEXTOFFER_API_PORT)")] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="processes (default NEXTOFFER_API_WORKERS)")
    ] = None,
) -> None:
    """Serve the API (and later the console) until stopped."""
    settings = load_settings()
    _serve(settings, host, port, workers)


def _serve(settings: Settings, host: str | None, port: int | None, workers: int | None) -> None:
    import os

    import uvicorn

    host = host or settings.api_host
    port = port or settings.api_port
    workers = workers or settings.api_workers
    refuse_insecure_secrets(settings)
    if settings.broker_url:
        # A bad broker URL is one line here, not a trace from every API process.
        celery_app(settings)
    engine = open_platform(settings).engine
    wait_for_database(engine, settings.db_wait_timeout_s)
    if migrate.current_revision(engine) != migrate.head_revision():
        raise ConfigError("the database schema is not current: run `nextoffer db upgrade`")
    engine.dispose()
    if workers > 1:
        # Counters and histograms of every worker process are merged at /metrics.
        metrics_dir = settings.var_dir / "prometheus"
        metrics_dir.mkdir(parents=True, exist_ok=True)
        for stale in metrics_dir.glob("*.db"):
            stale.unlink()
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    err_console.print(f"serving on http://{host}:{port} ({workers} worker(s))", highlight=False)
    uvicorn.run(
        "nextoffer.asgi:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
        server_header=False,
        **proxy_options(settings),
    )


def proxy_options(settings: Settings) -> dict[str, Any]:
    """Proxy options of uvicorn: X-Forwarded-For believed from FORWARDED_ALLOW_IPS only.

    Empty (the default) trusts no one, not even 127.0.0.1: the connection's address is the
    client's, so no caller can pick the address the login backoff counts against.
    """
    trusted = [part.strip() for part in settings.forwarded_allow_ips.split(",") if part.strip()]
    if not trusted:
        return {"proxy_headers": False, "forwarded_allow_ips": ""}
    return {"proxy_headers": True, "forwarded_allow_ips": ",".join(trusted)}


@handles_errors
def quickstart(
    customers: Annotated[int, typer.Option(min=100, help="customers to generate")] = 20_000,
    seed: Annotated[int, typer.Option(help="random seed for the generated world")] = 42,
    data: Annotated[Path, typer.Option(help="where the generated files go")] = Path("var/data"),
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="serve the API when done")
    ] = True,
    clock_start: Annotated[
        float | None, typer.Option(hidden=True, help="epoch seconds `make run` started")
    ] = None,
    install_done: Annotated[
        float | None, typer.Option(hidden=True, help="epoch seconds its install ended")
    ] = None,
) -> None:
    """The main job: generate, migrate, ingest, features, train, precompute, impact, serve.

    Ends with each stage's seconds, up to the served API's first answer (with --serve).
    """
    started = time.perf_counter()
    clock = StageClock(clock_start, install_done)
    generate(out=data, customers=customers, seed=seed)
    clock.lap("generate")
    db_upgrade(revision="head", timeout=None)
    clock.lap("migrate")
    ingest(path=str(data))
    clock.lap("ingest")
    features(as_of=None)
    clock.lap("features")
    train(models="offers,churn,uplift", params=None, score=True)
    clock.lap("train")
    precompute()
    clock.lap("precompute")
    settings = load_settings()
    from nextoffer.jobs.calls import run_impact
    from nextoffer.serving.api_keys import create_api_key

    engine = open_platform(settings).engine
    # The generated world holds a campaign with a control group: the Impact page has a result.
    console.print(run_impact(engine, settings).summary(), highlight=False)
    _record, sample_key = create_api_key(engine, "quickstart sample", Role.OPERATOR)
    clock.lap("impact, key")
    url = f"http://{settings.api_host}:{settings.api_port}"
    console.print(f"quickstart: done in {time.perf_counter() - started:.1f} s", highlight=False)
    console.print(
        f"API:        {url}/docs\n"
        f"sample key: an operator key, shown once — export NEXTOFFER_KEY=<the key below>\n",
        highlight=False,
    )
    typer.echo(sample_key)
    console.print(
        f'try:        curl -H "X-API-Key: $NEXTOFFER_KEY" {url}/v1/customers/C00000001/offers',
        highlight=False,
        soft_wrap=True,
    )
    if not serve_after:
        console.print(clock.table(), highlight=False)
        return

    def answered() -> None:
        clock.lap("first answer")
        console.print(clock.table(), highlight=False)

    # The first answer is the served API's own, over HTTP, for the customer in the hint above.
    wait_for_first_answer(
        answer_url(settings.api_host, settings.api_port, "C00000001"), sample_key, answered
    )
    _serve(settings, None, None, None)
