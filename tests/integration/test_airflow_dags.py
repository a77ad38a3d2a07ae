"""The Airflow DAGs in Airflow's own virtualenv: they import, keep the seed's schedules, and run.

`make airflow` creates .venv-airflow. The DAG tasks call nextoffer in this virtualenv
(NEXTOFFER_PYTHON = this interpreter), as they would call /opt/nextoffer/venv in production.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from nextoffer.config import Settings
from nextoffer.store.engine import make_engine
from nextoffer.store.ledger import list_entries
from nextoffer.store.migrate import upgrade
from nextoffer.store.schema import Customer, JobRun
from tests.conftest import IN_CI

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_BIN = REPO / ".venv-airflow" / "bin"
DAGS = REPO / "dags"

pytestmark = pytest.mark.slow

# Runs in Airflow's interpreter: parse dags/ and describe what was found, as JSON. The
# second parse checks that the schedule variables override the seed's crontabs.
DESCRIBE_DAGS = """
import json, os, sys
try:
    from airflow.dag_processing.dagbag import DagBag  # Airflow 3
except ImportError:
    from airflow.models.dagbag import DagBag  # Airflow 2

def describe(folder):
    bag = DagBag(dag_folder=folder)
    dags = {}
    for dag_id, dag in bag.dags.items():
        dags[dag_id] = {
            "schedule": str(getattr(dag, "schedule", None) or dag.schedule_interval),
            "catchup": dag.catchup,
            "max_active_runs": dag.max_active_runs,
            "upstream": {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks},
            "retries": {t.task_id: t.retries for t in dag.tasks},
            "backoff": {t.task_id: bool(t.retry_exponential_backoff) for t in dag.tasks},
            "python": sorted({getattr(t, "python", "") for t in dag.tasks}),
        }
    return {"import_errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": dags}

first = describe(sys.argv[1])
os.environ["NEXTOFFER_ETL_CRON"] = "30 1 * * *"
os.environ["NEXTOFFER_RETRAIN_CRON"] = "0 4 * * 6"
second = describe(sys.argv[1])
print(json.dumps({"seed": first, "overridden": second}))
"""


@dataclass(frozen=True)
class Airflow:
    """Airflow's commands with a throwaway AIRFLOW_HOME (SQLite metadata database)."""

    home: Path

    def env(self, **nextoffer: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("NEXTOFFER_", "AIRFLOW_", "AIRFLOW__"))
        }
        env.update(
            AIRFLOW_HOME=str(self.home),
            AIRFLOW__CORE__DAGS_FOLDER=str(DAGS),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            NEXTOFFER_PYTHON=sys.executable,
            NEXTOFFER_LOG_JSON="false",
        )
        env.update({f"NEXTOFFER_{k.upper()}": v for k, v in nextoffer.items()})
        return env

    def run(self, *args: str, **nextoffer: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(AIRFLOW_BIN / "airflow"), *args],
            env=self.env(**nextoffer),
            capture_output=True,
            text=True,
            # Below pytest's 600 s, so that a hung run (a failing task waiting for its retry)
            # fails here, with Airflow's output.
            timeout=420,
            check=False,
        )
        assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
        return result

    def task_states(self, dag_id: str) -> dict[str, str | None]:
        """The states of the tasks of a DAG's latest run, from Airflow's own database."""
        with sqlite3.connect(self.home / "airflow.db") as conn:
            (run_id,) = conn.execute(
                "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
            ).fetchone()
            rows = conn.execute(
                "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?",
                (dag_id, run_id),
            ).fetchall()
        return dict(rows)


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Airflow:
    if not (AIRFLOW_BIN / "airflow").exists():
        message = f"{AIRFLOW_BIN / 'airflow'} is missing: run `make airflow` first"
        if IN_CI:
            pytest.fail(f"{message} (CI=true: `make check` runs scripts/prepare, which does it)")
        pytest.skip(message)
    home = Airflow(tmp_path_factory.mktemp("airflow-home"))
    home.run("db", "migrate")
    return home


@dataclass(frozen=True)
class Deployment:
    """nextoffer's side: a migrated database, a var folder and a tiny generated source."""

    settings: dict[str, str]
    engine: Engine
    data: Path


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("incoming")
    nextoffer = str(Path(sys.executable).parent / "nextoffer")
    subprocess.run(
        [nextoffer, "generate", "--customers", "200", "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


@pytest.fixture
def deployment(tmp_path: Path, generated: Path) -> Iterator[Deployment]:
    url = f"sqlite:///{tmp_path / 'nextoffer.db'}"
    engine = make_engine(url)
    upgrade(engine)
    settings = {
        "database_url": url,
        "var_dir": str(tmp_path / "var"),
        "registry_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "artifacts_url": f"file://{tmp_path / 'artifacts'}",
        "ingest_source": str(generated),
        "cache_url": "memory://",
    }
    yield Deployment(settings, engine, generated)
    engine.dispose()


def count(engine: Engine, what: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(what)).scalar_one())


def jobs(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return sorted((j, s) for j, s in conn.execute(select(JobRun.job, JobRun.status)))


def test_dags_import_with_the_seed_schedules(airflow: Airflow) -> None:
    described = subprocess.run(
        [str(AIRFLOW_BIN / "python"), "-c", DESCRIBE_DAGS, str(DAGS)],
        env=airflow.env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    found = json.loads(described.stdout.strip().splitlines()[-1])
    seed, overridden = found["seed"], found["overridden"]
    assert seed["import_errors"] == {}
    assert set(seed["dags"]) == {"daily_etl", "weekly_retraining"}
    daily, weekly = seed["dags"]["daily_etl"], seed["dags"]["weekly_retraining"]

    # The DAGs cannot import nextoffer, so they spell the schedules out: they must stay the
    # defaults Celery beat uses.
    defaults = Settings.model_fields
    assert daily["schedule"] == defaults["etl_cron"].default == "0 2 * * *"
    assert weekly["schedule"] == defaults["retrain_cron"].default == "0 3 * * 0"
    assert overridden["dags"]["daily_etl"]["schedule"] == "30 1 * * *"
    assert overridden["dags"]["weekly_retraining"]["schedule"] == "0 4 * * 6"

    assert daily["upstream"] == {
        "in_charge": [],
        "extract": ["in_charge"],
        "load": ["extract"],
        "recalculate_features": ["load"],
        "update_cache": ["recalculate_features"],
        "measure_impact": ["recalculate_features"],
    }
    assert weekly["upstream"] == {
        "in_charge": [],
        "train_evaluate_register": ["in_charge"],
        "update_inference": ["train_evaluate_register"],
    }
    for dag in (daily, weekly):
        assert dag["catchup"] is False
        assert dag["max_active_runs"] == 1
        assert dag["python"] == [sys.executable]  # every task runs in nextoffer's virtualenv
        work = {task: n for task, n in dag["retries"].items() if task != "in_charge"}
        assert work and all(n >= 1 for n in work.values()), dag["retries"]
        assert all(dag["backoff"].values())
        assert dag["retries"]["in_charge"] == 0


def test_daily_etl_loads_the_source_when_airflow_is_in_charge(
    airflow: Airflow, deployment: Deployment
) -> None:
    airflow.run(
        "dags", "test", "daily_etl", "2026-11-02", scheduler="airflow", **deployment.settings
    )

    assert airflow.task_states("daily_etl") == {
        "in_charge": "success",
        "extract": "success",
        "load": "success",
        "recalculate_features": "success",
        "update_cache": "success",
        "measure_impact": "success",
    }
    ledger = {Path(e.uri).name: e for e in list_entries(deployment.engine)}
    files = sorted(p.name for p in deployment.data.glob("*.csv"))
    assert sorted(ledger) == files
    assert all(e.uri == str(deployment.data.resolve() / name) for name, e in ledger.items())
    lines = (deployment.data / "customers.csv").read_text(encoding="utf-8").splitlines()
    customers = ledger["customers.csv"]
    assert customers.rows_read == len(lines) - 1 == 200
    assert count(deployment.engine, Customer) == 200 - customers.rows_quarantined > 0
    # The steps' own runs, as when Celery or the CLI runs them (no champion: no precompute).
    assert jobs(deployment.engine) == [
        ("features", "succeeded"),
        ("impact", "succeeded"),
        ("ingest", "succeeded"),
    ]


def test_dags_stay_idle_when_celery_beat_is_in_charge(
    airflow: Airflow, deployment: Deployment
) -> None:
    airflow.run(
        "dags", "test", "daily_etl", "2026-11-03", scheduler="celery", **deployment.settings
    )
    airflow.run(
        "dags", "test", "weekly_retraining", "2026-11-01", scheduler="celery", **deployment.settings
    )

    states = airflow.task_states("daily_etl")
    assert states == dict.fromkeys(states, "skipped") and len(states) == 6
    states = airflow.task_states("weekly_retraining")
    assert states == dict.fromkeys(states, "skipped") and len(states) == 3
    assert count(deployment.engine, Customer) == 0
    assert list_entries(deployment.engine) == []
    assert jobs(deployment.engine) == []
