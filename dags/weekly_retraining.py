"""Airflow DAG `weekly_retraining`: train → evaluate → register if improved → update inference.

Runs the catalogue's jobs (`nextoffer.jobs`) in nextoffer's own virtualenv
(NEXTOFFER_PYTHON), like `daily_etl`. Training, the held-out evaluation and the
promote-only-if-better registration are one task, because they are one job (`training`):
the decision needs the freshly trained model and its test metrics together. Then, if the
offers champion changed, every customer's offers are precomputed with it; the API picks
the new champion up by itself within NEXTOFFER_SERVING_REFRESH_S. See dags/README.md.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, task

# The seed's schedule (Sunday 03:00 UTC), overridable like Celery beat's; a test checks it
# still equals nextoffer's default (Settings().retrain_cron).
SCHEDULE = os.environ.get("NEXTOFFER_RETRAIN_CRON", "0 3 * * 0")
NEXTOFFER_PYTHON = os.environ.get("NEXTOFFER_PYTHON", "/opt/nextoffer/venv/bin/python")
# A step that exits with this code is marked skipped, and so are the steps after it.
SKIP = 99

DEFAULT_ARGS = {
    "owner": "nextoffer",
    "retries": 2,
    "retry_delay": timedelta(minutes=10),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(hours=1),
}


def retraining_step(step: str, trained: dict | None = None) -> dict:
    """Run one step of the weekly retraining in nextoffer's virtualenv; returns JSON counts.

    Airflow copies this function's source into a script for NEXTOFFER_PYTHON, so it imports
    everything it uses and refers to nothing else in this file.
    """
    import sys
    import uuid

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
    from nextoffer.jobs.runner import run_exclusive
    from nextoffer.platform import build_platform
    from nextoffer.store.engine import wait_for_database

    platform = build_platform(settings)  # as every entry point starts
    engine = platform.engine
    wait_for_database(engine, settings.db_wait_timeout_s)
    context = platform.job_context()
    # The same jobs as Celery beat's chain, by their catalogue names, one of a kind at a
    # time whoever started them.
    if step == "train_evaluate_register":
        return run_exclusive(context, "training", {}, str(uuid.uuid4()))
    if step == "update_inference":
        if not trained.get("offers_promoted"):
            print("the offers champion did not change: precomputed offers stay valid; skipping")
            sys.exit(99)
        counts = {"precompute": run_exclusive(context, "precompute", {}, str(uuid.uuid4()))}
        # A memory:// cache lives inside each API process: filling this task's would be lost.
        if not settings.cache_url.startswith("memory://"):
            counts["cache"] = run_exclusive(context, "cache_rebuild", {}, str(uuid.uuid4()))
        return counts
    raise ValueError(f"unknown retraining step {step!r}")


@dag(
    dag_id="weekly_retraining",
    schedule=SCHEDULE,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    dagrun_timeout=timedelta(hours=12),
    tags=["nextoffer", "training"],
    doc_md=__doc__,
)
def weekly_retraining() -> None:
    """The seed's weekly retraining; a model is promoted only if it beats the champion."""
    step = task.external_python(
        python=NEXTOFFER_PYTHON,
        expect_airflow=False,
        skip_on_exit_code=SKIP,
        multiple_outputs=False,
    )(retraining_step)
    in_charge = step.override(task_id="in_charge", retries=0)("in_charge")
    trained = step.override(task_id="train_evaluate_register")("train_evaluate_register")
    in_charge >> trained
    step.override(task_id="update_inference")("update_inference", trained=trained)


weekly_retraining()
