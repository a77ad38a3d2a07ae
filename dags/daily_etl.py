"""Airflow DAG `daily_etl`: extract → load → recalculate features → update cache, nightly.

After the features, the impact of the offers is measured beside the cache update. Each
task runs one step in nextoffer's own virtualenv (NEXTOFFER_PYTHON) as a job of the
catalogue (`nextoffer.jobs`: ingest, features, impact, precompute, cache_rebuild), started by name
through `execute`, which takes the job's lock and records its one run: Airflow and
nextoffer do not share an environment, and these tasks are thin callers, never a second
implementation. The first task skips the whole run unless
NEXTOFFER_SCHEDULER=airflow, so that only one scheduler is in charge. See dags/README.md.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, task

# nextoffer is not importable here, so the seed's schedule (daily 02:00 UTC) is written out;
# the variable that sets it for Celery beat overrides it here too. A test checks it still
# equals nextoffer's default (Settings().etl_cron).
SCHEDULE = os.environ.get("NEXTOFFER_ETL_CRON", "0 2 * * *")
NEXTOFFER_PYTHON = os.environ.get("NEXTOFFER_PYTHON", "/opt/nextoffer/venv/bin/python")
# A step that exits with this code is marked skipped, and so are the steps after it.
SKIP = 99

DEFAULT_ARGS = {
    "owner": "nextoffer",
    "retries": 2,
    "retry_delay": timedelta(minutes=5),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=30),
}


def nightly_step(step: str, staged: dict | None = None, loaded: dict | None = None) -> dict:
    """Run one step of the nightly ETL in nextoffer's virtualenv; returns its counts as JSON.

    Airflow copies this function's source into a script for NEXTOFFER_PYTHON, so it imports
    everything it uses and refers to nothing else in this file.
    """
    import sys

    from nextoffer.config import Settings
    from nextoffer.observe.logs import configure_logging

    settings = Settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    if step == "in_charge":
        if settings.scheduler != "airflow":
            print(f"NEXTOFFER_SCHEDULER={settings.scheduler}: Celery beat is in charge; skipping")
            sys.exit(99)
        return {"scheduler": settings.scheduler}

    # Imported after the check above, which must stay quick: these take seconds.
    import uuid

    from nextoffer.jobs.runner import execute
    from nextoffer.pipelines import nightly
    from nextoffer.platform import build_platform
    from nextoffer.store.engine import wait_for_database

    platform = build_platform(settings)  # as every entry point starts
    engine = platform.engine
    wait_for_database(engine, settings.db_wait_timeout_s)
    context = platform.job_context()
    if step == "extract":
        # Only lists and downloads: no job of its own, nothing recorded.
        return nightly.extract(engine, settings).to_dict()
    # Each step is a job of the catalogue, started by name: its lock, its one run record.
    if step == "load":
        run_id = str(uuid.uuid4())
        result = execute(context, "ingest", {"staged": staged}, run_id).result
        print(result.summary())
        return {"run_id": run_id, **result.counts()}
    if step == "recalculate_features":
        if not loaded["files"]:
            print("no new files were loaded: features and cache are up to date; skipping")
            sys.exit(99)
        done = execute(context, "features", {})
        print(done.result.summary())
        return {"run_id": done.run_id, "customers": done.counts["customers"]}
    if step == "measure_impact":
        # Treated vs the control group over the windows closed by the new data's clock.
        done = execute(context, "impact", {})
        print(done.result.summary())
        return {"run_id": done.run_id, **done.counts}
    if step == "update_cache":
        if context.models().champion("offers") is None:
            print("no offers champion yet: nothing to precompute")
            counts = {"customers": 0, "model_version": None}
        else:
            done = execute(context, "precompute", {})
            counts = {k: done.counts[k] for k in ("customers", "model_version")}
        # A memory:// cache lives inside each API process: filling this task's would be lost.
        if not settings.cache_url.startswith("memory://"):
            counts["cache"] = execute(context, "cache_rebuild", {}).counts
        return counts
    raise ValueError(f"unknown nightly step {step!r}")


@dag(
    dag_id="daily_etl",
    schedule=SCHEDULE,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    dagrun_timeout=timedelta(hours=6),
    tags=["nextoffer", "etl"],
    doc_md=__doc__,
)
def daily_etl() -> None:
    """The seed's daily ETL; only new files of NEXTOFFER_INGEST_SOURCE are loaded."""
    step = task.external_python(
        python=NEXTOFFER_PYTHON,
        expect_airflow=False,
        skip_on_exit_code=SKIP,
        multiple_outputs=False,
    )(nightly_step)
    # Deciding who is in charge is not worth retrying: a retry would give the same answer.
    in_charge = step.override(task_id="in_charge", retries=0)("in_charge")
    staged = step.override(task_id="extract")("extract")
    loaded = step.override(task_id="load")("load", staged=staged)
    features = step.override(task_id="recalculate_features")("recalculate_features", loaded=loaded)
    cache = step.override(task_id="update_cache")("update_cache")
    impact = step.override(task_id="measure_impact")("measure_impact")
    in_charge >> staged
    features >> cache
    features >> impact


daily_etl()
