"""The `nextoffer` command: every job and operator action, as thin calls into the pipelines."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import DownloadColumn, MofNCompleteColumn
from rich.table import Table
from sqlalchemy import Engine

from nextoffer.cli.common import console, err_console, handles_errors, load_settings, progress
from nextoffer.config import Settings
from nextoffer.domain.errors import ConfigError
from nextoffer.domain.roles import Role, parse_role
from nextoffer.store import migrate
from nextoffer.store.engine import make_engine, safe_url, wait_for_database

app = typer.Typer(
    help=(
        "nextoffer: next-best offers, churn risk and segments for telecom customers.\n\n"
        "Settings come from NEXTOFFER_* environment variables (or NEXTOFFER_*_FILE for "
        "secrets); the defaults run everything embedded under ./var (SQLite, in-process "
        "cache, inline tasks)."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema: migrate up or down, show the current revision.")
app.add_typer(db_app, name="db")


@app.command()
@handles_errors
def generate(
    out: Annotated[Path, typer.Option(help="folder to write the import files into")] = Path(
        "var/data"
    ),
    customers: Annotated[int, typer.Option(min=1, help="number of customers")] = 20_000,
    seed: Annotated[int, typer.Option(help="random seed: same seed, same files")] = 42,
) -> None:
    """Generate a synthetic telco world (customers, catalogue, holdings, events, churn).

    The behaviour comes from a hidden structure written to OUT/truth/ so that models can
    be checked against it. Deterministic for a seed.
    """
    from nextoffer.synth.generator import generate_world

    with progress(MofNCompleteColumn()) as bar:
        task = bar.add_task("generate", total=customers)
        result = generate_world(
            out, customers, seed, progress=lambda done: bar.update(task, completed=done)
        )
    counts = " · ".join(f"{n:,} {name}" for name, n in result.rows.items())
    console.print(f"generate: {counts} → {result.out_dir} · {result.seconds:.1f} s", soft_wrap=True)


@db_app.command("upgrade")
@handles_errors
def db_upgrade(
    revision: Annotated[str, typer.Option(help="target revision")] = "head",
    timeout: Annotated[
        float | None, typer.Option(help="seconds to wait for the database (default: setting)")
    ] = None,
) -> None:
    """Wait for the database, then apply migrations up to REVISION (default: newest)."""
    settings = load_settings()
    engine = make_engine(settings.database_url)
    wait_for_database(engine, settings.db_wait_timeout_s if timeout is None else timeout)
    migrate.upgrade(engine, revision)
    console.print(
        f"db: {safe_url(engine.url)} at revision {migrate.current_revision(engine)}",
        highlight=False,
        soft_wrap=True,
    )


@db_app.command("downgrade")
@handles_errors
def db_downgrade(
    revision: Annotated[str, typer.Option(help="target revision; 'base' drops every table")] = "-1",
) -> None:
    """Revert migrations down to REVISION (default: one step)."""
    settings = load_settings()
    engine = make_engine(settings.database_url)
    wait_for_database(engine, settings.db_wait_timeout_s)
    migrate.downgrade(engine, revision)
    console.print(f"db: at revision {migrate.current_revision(engine) or 'base'}")


@db_app.command("current")
@handles_errors
def db_current() -> None:
    """Show the database's revision and whether it is the newest this version ships."""
    settings = load_settings()
    engine = make_engine(settings.database_url)
    wait_for_database(engine, settings.db_wait_timeout_s)
    current = migrate.current_revision(engine)
    head = migrate.head_revision()
    state = "up to date" if current == head else f"behind (newest is {head})"
    console.print(f"db: revision {current or 'none'} · {state}")


keys_app = typer.Typer(help="API keys for machines: create, list, revoke.")
app.add_typer(keys_app, name="keys")
users_app = typer.Typer(help="User accounts for people: create, list, disable.")
app.add_typer(users_app, name="users")

ROLE_HELP = "viewer, writer (+ events), operator (+ experiments, jobs) or admin (+ keys, users)"


def _role_option(text: str) -> Role:
    try:
        return parse_role(text)
    except ValueError as exc:
        raise ConfigError(f"--role: {exc}") from None


def _accounts_engine() -> Engine:
    settings = load_settings()
    engine = make_engine(settings.database_url)
    wait_for_database(engine, settings.db_wait_timeout_s)
    return engine


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else ""


@keys_app.command("create")
@handles_errors
def keys_create(
    role: Annotated[str, typer.Option(help=ROLE_HELP)],
    name: Annotated[str, typer.Option(help="what the key is for (default: '<role> key')")] = "",
) -> None:
    """Create an API key and print it once: only its hash is kept, so copy it now.

    The key alone goes to standard output (for `KEY=$(nextoffer keys create ...)`), the
    rest to standard error. Send it in the X-API-Key header.
    """
    from nextoffer.serving.accounts import create_api_key

    record, plaintext = create_api_key(_accounts_engine(), name, _role_option(role))
    err_console.print(
        f"keys: created {record.key_id} ({record.name!r}, role {record.role})", highlight=False
    )
    # Plain echo, not rich: the key must come out exactly, unwrapped and unstyled.
    typer.echo(plaintext)
    err_console.print(
        "[yellow]warning:[/yellow] this key will not be shown again; store it now",
        highlight=False,
    )


@keys_app.command("list")
@handles_errors
def keys_list() -> None:
    """Every API key, revoked ones included (secrets are never stored, so never shown)."""
    from nextoffer.serving.accounts import list_api_keys

    keys = list_api_keys(_accounts_engine())
    if not keys:
        console.print("keys: none yet; create one with `nextoffer keys create --role ...`")
        return
    table = Table("key_id", "name", "role", "created (UTC)", "revoked (UTC)", box=None)
    for key in keys:
        table.add_row(
            key.key_id, key.name, key.role.value, _when(key.created_at), _when(key.revoked_at)
        )
    console.print(table)


@keys_app.command("revoke")
@handles_errors
def keys_revoke(key_id: Annotated[str, typer.Argument(help="id shown by `keys list`")]) -> None:
    """Revoke an API key; running API processes stop accepting it within 30 s."""
    from nextoffer.serving.accounts import revoke_api_key

    record = revoke_api_key(_accounts_engine(), key_id)
    console.print(
        f"keys: revoked {record.key_id} ({record.name!r}) at {_when(record.revoked_at)} UTC",
        highlight=False,
    )


@users_app.command("create")
@handles_errors
def users_create(
    username: Annotated[str, typer.Argument(help="3-64 characters: A-Z a-z 0-9 . _ @ -")],
    role: Annotated[str, typer.Option(help=ROLE_HELP)],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from standard input")
    ] = False,
) -> None:
    """Create a user account; the password (12+ characters) is asked for, never an argument.

    Without --password-stdin it is prompted for twice with the input hidden.
    """
    import sys

    from nextoffer.serving.accounts import check_username, create_user

    # Everything that can be checked is, before anyone types a password.
    granted = _role_option(role)
    check_username(username)
    engine = _accounts_engine()
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    record = create_user(engine, username, password, granted)
    console.print(f"users: created {record.username} (role {record.role})", highlight=False)


@users_app.command("list")
@handles_errors
def users_list() -> None:
    """Every user account, disabled ones included."""
    from nextoffer.serving.accounts import list_users

    users = list_users(_accounts_engine())
    if not users:
        console.print("users: none yet; create one with `nextoffer users create NAME --role ...`")
        return
    table = Table("username", "role", "status", "created (UTC)", box=None)
    for user in users:
        status = "disabled" if user.disabled else "active"
        table.add_row(user.username, user.role.value, status, _when(user.created_at))
    console.print(table)


@users_app.command("disable")
@handles_errors
def users_disable(username: Annotated[str, typer.Argument(help="account to disable")]) -> None:
    """Disable a user: logins fail at once, issued tokens stop working within 30 s."""
    from nextoffer.serving.accounts import disable_user

    record = disable_user(_accounts_engine(), username)
    console.print(f"users: disabled {record.username}", highlight=False)


@app.command()
@handles_errors
def ingest(
    path: Annotated[
        str, typer.Argument(help="folder of import files, one file, or s3://bucket/prefix")
    ],
    new_only: Annotated[
        bool,
        typer.Option("--new-only", help="skip files the ledger has loaded (same place, content)"),
    ] = False,
) -> None:
    """Validate and load import files; bad rows go to quarantine with their reason.

    Files are recognised by name (products, customers, subscriptions, transactions,
    events, churn_labels; .csv, .csv.gz or .parquet) and loaded in dependency order.
    Re-running the same input changes nothing. An s3:// prefix (S3 or MinIO at
    NEXTOFFER_S3_ENDPOINT_URL, credentials from AWS_*) is read like a folder.
    """
    from nextoffer.pipelines.etl import run_ingest

    settings = load_settings()
    engine = make_engine(settings.database_url)
    wait_for_database(engine, settings.db_wait_timeout_s)
    with progress(DownloadColumn()) as bar:
        task = bar.add_task("ingest", total=None)
        result = run_ingest(
            engine,
            settings,
            path,
            new_only=new_only,
            on_start=lambda files: bar.update(task, total=sum(f.size for f in files)),
            progress=lambda n: bar.advance(task, n),
        )
    table = Table("file", "entity", "read", "loaded", "quarantined", box=None)
    for f in result.files:
        table.add_row(
            Path(f.source).name,
            f.entity,
            f"{f.rows_read:,}",
            f"{f.rows_loaded:,}",
            f"{f.rows_quarantined:,}",
        )
    console.print(table)
    if result.rows_quarantined:
        console.print(f"quarantined rows: {settings.quarantine_dir}/ and table `quarantine`")
    console.print(result.summary(), soft_wrap=True)


@app.command()
@handles_errors
def features(
    as_of: Annotated[
        datetime | None,
        typer.Option(help="measure features at this UTC instant (default: the data's clock)"),
    ] = None,
) -> None:
    """Compute every customer's features and segment.

    Features: recency/frequency/monetary, ARPU, usage, tenure, holdings by category,
    service contacts and engagement. They replace the previous ones in one transaction.
    """
    from nextoffer.pipelines.features import run_features

    settings = load_settings()
    engine = make_engine(settings.database_url)
    wait_for_database(engine, settings.db_wait_timeout_s)
    with err_console.status("computing features and segments"):
        result = run_features(engine, settings, as_of=_utc(as_of))
    table = Table("segment", "name", "customers", box=None)
    for segment in result.segments:
        table.add_row(str(segment.segment_id), segment.name, f"{segment.size:,}")
    console.print(table)
    console.print(result.summary(), soft_wrap=True)


@app.command()
@handles_errors
def precompute() -> None:
    """Score every customer's offers with the champion into the precomputed table.

    With NEXTOFFER_BROKER_URL set, the chunks run as tasks on the workers
    (`nextoffer worker`) and this command gathers them.
    """
    import uuid

    from nextoffer.ops.jobs import run_exclusive
    from nextoffer.pipelines.jobs import JobContext

    settings = load_settings()
    engine = make_engine(settings.database_url)
    wait_for_database(engine, settings.db_wait_timeout_s)
    with err_console.status("precomputing offers"):
        if settings.broker_url:
            from nextoffer.worker.fanout import job_context

            context = job_context(_celery(settings), engine, _registry(settings))
        else:
            context = JobContext(engine, settings, _registry(settings))
        # The job lock: no second precompute (CLI, API or worker) runs at the same time.
        counts = run_exclusive(context, "precompute", {}, str(uuid.uuid4()))
    console.print(
        f"precompute: {counts['customers']:,} customers ({counts['with_offers']:,} with offers) "
        f"in {counts['chunks']} chunks with offers {counts['model_version']}",
        highlight=False,
    )


def _celery(settings: Settings) -> Any:
    """The Celery app for NEXTOFFER_BROKER_URL; a ConfigError when it is empty or wrong."""
    try:
        from nextoffer.worker.app import make_celery
    except ImportError:
        raise ConfigError(
            "NEXTOFFER_BROKER_URL needs Celery: pip install 'nextoffer[worker]'"
        ) from None
    return make_celery(settings)


@app.command()
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
    celery = _celery(settings)
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


@app.command()
@handles_errors
def beat() -> None:
    """Run Celery beat: the schedule of nightly ETL, retraining, backups and refreshes.

    Run exactly one. Times are crontabs in UTC from NEXTOFFER_*_CRON; with
    NEXTOFFER_SCHEDULER=airflow it runs idle (Airflow's DAGs are in charge).
    """
    from nextoffer.worker.schedule import ENTRIES

    settings = load_settings()
    celery = _celery(settings)
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


@app.command()
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
    if settings.broker_url:
        # A bad broker URL is one line here, not a trace from every API process.
        _celery(settings)
    engine = make_engine(settings.database_url)
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
        "nextoffer.web.main:app",
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
        proxy_headers=True,
        server_header=False,
    )


@app.command()
@handles_errors
def quickstart(
    customers: Annotated[int, typer.Option(min=100, help="customers to generate")] = 20_000,
    seed: Annotated[int, typer.Option(help="random seed for the generated world")] = 42,
    data: Annotated[Path, typer.Option(help="where the generated files go")] = Path("var/data"),
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="serve the API when done")
    ] = True,
) -> None:
    """The main job: generate, migrate, ingest, features, train, precompute, then serve."""
    started = time.perf_counter()
    generate(out=data, customers=customers, seed=seed)
    db_upgrade(revision="head", timeout=None)
    ingest(path=str(data))
    features(as_of=None)
    train(models="offers,churn", params=None, score=True)
    precompute()
    settings = load_settings()
    from nextoffer.serving.accounts import create_api_key

    engine = make_engine(settings.database_url)
    _record, sample_key = create_api_key(engine, "quickstart sample", Role.OPERATOR)
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
    if serve_after:
        _serve(settings, None, None, None)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


evaluate_app = typer.Typer(
    help="Offline evaluation on any CSV: recommenders on interactions, churn on a table."
)
app.add_typer(evaluate_app, name="evaluate")


def _print_json(payload: Any) -> None:
    import json

    typer.echo(json.dumps(payload, indent=2, default=str))


def _metrics_table(title: str, rows: dict[str, dict[str, float]], columns: list[str]) -> Table:
    table = Table(title=title, box=None, title_justify="left")
    table.add_column("model")
    for column in columns:
        table.add_column(column.replace("_at_", "@"), justify="right")
    for name, values in rows.items():
        table.add_row(name, *(_fmt(values.get(c)) for c in columns))
    return table


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


@evaluate_app.command("recommenders")
@handles_errors
def evaluate_recommenders(
    interactions: Annotated[Path, typer.Option(help="CSV with one interaction per row")],
    user_col: Annotated[str, typer.Option(help="user id column")] = "user_id",
    item_col: Annotated[str, typer.Option(help="item id column")] = "item_id",
    rating_col: Annotated[str, typer.Option(help="rating column, if any")] = "rating",
    time_col: Annotated[str, typer.Option(help="timestamp column, if any")] = "timestamp",
    split: Annotated[
        str, typer.Option(help="stratified (per user, random), time, or leave_one_out")
    ] = "stratified",
    ratio: Annotated[float, typer.Option(min=0.01, max=0.99, help="train share")] = 0.75,
    seed: Annotated[int, typer.Option(help="random seed of the split")] = 42,
    filter_by: Annotated[str, typer.Option(help="stratify by user or item")] = "user",
    k: Annotated[int, typer.Option(min=1, help="cut-off of the ranking metrics")] = 10,
    models: Annotated[
        str | None, typer.Option(help="comma-separated models (default: all)")
    ] = None,
    weights: Annotated[str, typer.Option(help="binary or rating")] = "binary",
    tune: Annotated[bool, typer.Option(help="choose settings on a validation split")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Split an interactions CSV, fit every recommender, and print test ranking metrics.

    Settings (EASE regularisation, ALS factors, neighbours) are chosen on a validation
    split carved from the training part, never on the test part. Items a user has in
    training are not recommended; all of the user's test items are relevant.
    """
    from nextoffer.models.catalog import RECOMMENDERS
    from nextoffer.pipelines.evaluate import RecommenderEvaluationConfig
    from nextoffer.pipelines.evaluate import evaluate_recommenders as run

    choices = {"split": ("stratified", "time", "leave_one_out"), "filter_by": ("user", "item")}
    choices["weights"] = ("binary", "rating")
    given = {"split": split, "filter_by": filter_by, "weights": weights}
    for option, value in given.items():
        if value not in choices[option]:
            raise ConfigError(f"--{option.replace('_', '-')} must be one of {choices[option]}")
    config = RecommenderEvaluationConfig(
        user_col=user_col,
        item_col=item_col,
        rating_col=rating_col or None,
        time_col=time_col or None,
        split=split,  # type: ignore[arg-type]
        ratio=ratio,
        seed=seed,
        k=k,
        filter_by=filter_by,  # type: ignore[arg-type]
        models=tuple(m.strip() for m in models.split(",") if m.strip())
        if models is not None
        else tuple(RECOMMENDERS),
        weights=weights,  # type: ignore[arg-type]
        tune=tune,
    )
    with err_console.status("evaluating recommenders") as status:
        result = run(interactions, config, progress=lambda m: status.update(m))
    if as_json:
        _print_json(result.to_dict())
        return
    d = result.data
    console.print(
        f"{d['file']}: {d['interactions']:,} interactions · {d['users']:,} users · "
        f"{d['items']:,} items · {d['split']} split {d['ratio']} (seed {d['seed']}) → "
        f"{d['train']:,} train / {d['test']:,} test",
        highlight=False,
        soft_wrap=True,
    )
    columns = [f"{m}@{k}" for m in ("precision", "recall", "ndcg", "map", "hit_rate", "mrr")]
    table = _metrics_table("test metrics", result.metrics, [*columns, f"coverage@{k}"])
    # Whole names and headers even where the console is narrower than the table (80 columns
    # when piped): rich would otherwise cut them to "populari…".
    wide = console.options.update_width(max(console.width, 1_000))
    width = max(console.width, console.measure(table, options=wide).maximum)
    Console(width=width, highlight=False).print(table)
    for name, params in result.chosen.items():
        console.print(f"{name}: {params or 'default settings'}", highlight=False)


@evaluate_app.command("churn")
@handles_errors
def evaluate_churn(
    data: Annotated[Path, typer.Option(help="CSV with one customer per row and a label column")],
    label: Annotated[str, typer.Option(help="label column (yes/no, true/false or 1/0)")],
    id_col: Annotated[
        str | None, typer.Option(help="id column to drop (default: detected)")
    ] = None,
    folds: Annotated[int, typer.Option(min=2, max=20, help="cross-validation folds")] = 5,
    seed: Annotated[int, typer.Option(help="random seed of the folds")] = 42,
    tune: Annotated[bool, typer.Option(help="choose LightGBM settings in each fold")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Cross-validate the churn model and a logistic baseline on any customer table.

    Columns are typed automatically (numbers, yes/no flags, categories; blank cells are
    missing values) and id columns are dropped. LightGBM settings are chosen inside each
    training fold, never on the fold being scored.
    """
    import pandas as pd

    from nextoffer.domain.errors import InputError
    from nextoffer.models.churn_eval import evaluate_churn_table

    if not data.is_file():
        raise InputError(f"{data}: {'is a directory' if data.is_dir() else 'no such file'}")
    try:
        table = pd.read_csv(data, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise InputError(f"{data}: the file is empty") from None
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split())
        raise InputError(f"{data}: cannot read as CSV: {reason}") from None
    if label not in table.columns:
        raise InputError(f"{data}: no column {label!r}; found {', '.join(table.columns)}")
    if id_col is not None and id_col not in table.columns:
        raise InputError(f"{data}: no id column {id_col!r}")
    with err_console.status(f"cross-validating on {len(table):,} rows ({folds} folds)"):
        try:
            result = evaluate_churn_table(
                table, label, id_col=id_col, folds=folds, seed=seed, tune=tune
            )
        except ValueError as exc:
            raise InputError(f"{data}: {exc}") from None
    payload = result.to_dict()
    if as_json:
        _print_json(payload)
        return
    console.print(
        f"{data}: {payload['rows']:,} rows · churn rate {payload['positives_rate']:.1%} · "
        f"{folds}-fold cross-validation (seed {seed})",
        highlight=False,
        soft_wrap=True,
    )
    metrics = ("roc_auc", "pr_auc", "brier", "lift_top_decile")
    table_out = Table(title="mean ± std over folds", box=None, title_justify="left")
    table_out.add_column("model")
    for metric in metrics:
        table_out.add_column(metric, justify="right")
    for name, scores in result.models.items():
        table_out.add_row(name, *(f"{scores.mean[m]:.4f} ± {scores.std[m]:.4f}" for m in metrics))
    console.print(table_out)
    schema = payload["schema"]
    categorical = ", ".join(f"{n} ({k} levels)" for n, k in schema["categorical"].items())
    dropped = ", ".join(f"{n} ({why})" for n, why in schema["dropped"].items())
    console.print(
        f"columns: {len(schema['numeric'])} numeric · "
        f"{len(schema['boolean'])} yes/no {schema['boolean']} · "
        f"categorical: {categorical or 'none'} · dropped: {dropped or 'none'}",
        highlight=False,
        soft_wrap=True,
    )
    for fold, params in enumerate(result.chosen_params, start=1):
        console.print(
            f"fold {fold} LightGBM settings: {params or 'defaults'}",
            highlight=False,
            soft_wrap=True,
        )


models_app = typer.Typer(help="Registered model versions: list, promote, roll back.")
app.add_typer(models_app, name="models")


def _registry(settings: Settings) -> Any:
    from nextoffer.registry.mlflow_registry import ModelRegistry

    return ModelRegistry.from_settings(settings)


def _decision_line(decision: Any) -> str:
    verb = "promoted to champion" if decision.promoted else "registered, champion unchanged"
    return f"{decision.kind} v{decision.version}: {verb} — {decision.reason}"


@app.command()
@handles_errors
def train(
    models: Annotated[str, typer.Option(help="comma-separated kinds: offers, churn")] = (
        "offers,churn"
    ),
    params: Annotated[
        Path | None,
        typer.Option(help="JSON file of pinned settings (skips the search for those models)"),
    ] = None,
    score: Annotated[bool, typer.Option(help="score churn for every customer afterwards")] = True,
) -> None:
    """Train, evaluate on held-out data, register in MLflow, promote only if better.

    Offers: recommenders + LightGBM propensity ranker, tested on the latest time window.
    Churn: calibrated LightGBM, tested on held-out customers, with a drift report. A new
    version becomes champion only if it beats the champion's primary metric (nDCG@10 for
    offers, ROC-AUC for churn) by NEXTOFFER_PROMOTION_MARGIN; otherwise the reason is
    recorded. Then every customer's churn risk is scored with the champion.
    """
    import json

    from nextoffer.pipelines.train import TrainOverrides, run_training

    settings = load_settings()
    engine = make_engine(settings.database_url)
    wait_for_database(engine, settings.db_wait_timeout_s)
    overrides = None
    if params is not None:
        try:
            overrides = TrainOverrides.from_dict(json.loads(params.read_text()))
        except (OSError, json.JSONDecodeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"--params {params}: {exc}") from None
    kinds = [k.strip() for k in models.split(",") if k.strip()]
    registry = _registry(settings)
    with err_console.status("training") as status:
        try:
            result = run_training(
                engine,
                settings,
                registry,
                kinds=kinds,
                overrides=overrides,
                score=score,
                progress=lambda m: status.update(m),
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    if result.offers is not None:
        k = 10
        columns = [f"{m}_at_{k}" for m in ("ndcg", "map", "precision", "recall", "hit_rate")]
        console.print(
            _metrics_table(
                f"offers, test window from {result.offers.calendar['test_as_of'][:10]}",
                result.offers.table,
                columns,
            )
        )
        for name, chosen in result.offers.chosen.items():
            console.print(f"  chosen {name}: {chosen or 'no settings'}", highlight=False)
    if result.churn is not None:
        c = result.churn
        rows = {"lightgbm (calibrated)": c.metrics, "logistic baseline": c.baseline}
        console.print(
            _metrics_table(
                f"churn, {c.rows['test']:,} held-out customers (labels of {c.label_as_of[:10]})",
                rows,
                ["roc_auc", "pr_auc", "brier", "lift_top_decile"],
            )
        )
        console.print(
            f"  uncalibrated brier {c.metrics['brier_uncalibrated']:.4f} · chosen {c.chosen} · "
            f"drift: max PSI {c.drift.max_psi:.3f} ({c.drift.worst_feature})"
            f"{' [red]DRIFT[/red]' if c.drift.flagged else ''}",
            highlight=False,
            soft_wrap=True,
        )
    for decision in result.decisions.values():
        console.print(_decision_line(decision), highlight=False, soft_wrap=True)
    if result.churn_scored:
        bands = " · ".join(f"{n:,} {b}" for b, n in sorted(result.churn_scored.items()))
        console.print(
            f"churn scores (model v{result.churn_model_version}): {bands}", highlight=False
        )
    console.print(f"train: done in {result.seconds:.1f} s", highlight=False)


@models_app.command("list")
@handles_errors
def models_list(
    kind: Annotated[str | None, typer.Argument(help="offers or churn (default: both)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Every registered version, newest first: metrics, decision, champion, artifacts."""
    from nextoffer.registry.mlflow_registry import MODEL_KINDS

    registry = _registry(load_settings())
    kinds = [kind] if kind else list(MODEL_KINDS)
    primary = {"offers": "ndcg_at_10", "churn": "roc_auc"}
    everything: dict[str, list[dict[str, Any]]] = {}
    for name in kinds:
        if name not in MODEL_KINDS:
            raise ConfigError(f"unknown model kind {name!r}; known: {', '.join(MODEL_KINDS)}")
        everything[name] = [
            {
                "version": v.version,
                "created_at": v.created_at.isoformat(),
                "champion": v.is_champion,
                "metrics": v.metrics,
                "decision": v.tags.get("nextoffer.decision", ""),
                "reason": v.tags.get("nextoffer.reason", ""),
                "artifacts_deleted": v.artifacts_deleted,
            }
            for v in registry.versions(name)
        ]
    if as_json:
        _print_json(everything)
        return
    for name, versions in everything.items():
        table = Table(title=f"nextoffer-{name}", box=None, title_justify="left")
        for column in ("version", "created (UTC)", primary[name], "champion", "decision"):
            table.add_column(column)
        for v in versions:
            value = v["metrics"].get(primary[name])
            table.add_row(
                str(v["version"]),
                v["created_at"][:19].replace("T", " "),
                "—" if value is None else f"{value:.4f}",
                "★" if v["champion"] else "",
                f"{v['reason']}{' (artifacts pruned)' if v['artifacts_deleted'] else ''}",
            )
        console.print(table if versions else f"nextoffer-{name}: no versions yet")


@models_app.command("promote")
@handles_errors
def models_promote(
    kind: Annotated[str, typer.Argument(help="offers or churn")],
    version: Annotated[int, typer.Argument(help="version to make champion")],
    reason: Annotated[str, typer.Option(help="why (kept in the registry)")] = "promoted by hand",
) -> None:
    """Make VERSION the champion of KIND by hand, whatever its metrics."""
    decision = _registry(load_settings()).promote(kind, version, reason)
    console.print(_decision_line(decision), highlight=False, soft_wrap=True)


@models_app.command("rollback")
@handles_errors
def models_rollback(kind: Annotated[str, typer.Argument(help="offers or churn")]) -> None:
    """Point KIND's champion back at the previous champion."""
    decision = _registry(load_settings()).rollback(kind)
    console.print(_decision_line(decision), highlight=False, soft_wrap=True)


from nextoffer.cli import etl as _etl  # noqa: E402

app.add_typer(_etl.etl_app, name="etl")

from nextoffer.cli import backup as _backup  # noqa: E402

app.add_typer(_backup.app, name="backup")

from nextoffer.cli import ops as _ops  # noqa: E402

_ops.register(app)
