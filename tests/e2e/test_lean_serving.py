"""The served module stays lean: no pandas, scikit-learn, MLflow, implicit or LightGBM.

In a fresh interpreter: import `nextoffer.asgi`, build the app on a copy of the trained
SQLite world, run its start-up (champions loaded, warm-up), answer one live offers request
(no cache entry, precomputed rows deleted, so the champion really scores), one churn-risk
and one segment request, and a /metrics scrape (the model gauges); then peak RSS and
`sys.modules` are checked. A finder on
`sys.meta_path` records who first imported each forbidden module, so a failure names it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from nextoffer.store.engine import make_engine
from nextoffer.store.schema import Customer, PrecomputedOffers
from tests.e2e.server import copy_world, create_key, world_env

FORBIDDEN = ("pandas", "pyarrow", "sklearn", "mlflow", "implicit", "lightgbm")
PEAK_RSS_MB = 150

# Runs in the fresh interpreter: argv[1] is the customer id, argv[2] the API key.
PROBE = r"""
import json, sys, traceback

FORBIDDEN = %(forbidden)r
first_import = {}


class Recorder:
    # Records the stack of the first import of each forbidden top-level package.
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in FORBIDDEN and top not in first_import:
            stack = [
                f"{f.filename.rsplit('site-packages/', 1)[-1].rsplit('src/', 1)[-1]}:{f.lineno}"
                for f in traceback.extract_stack()[:-1]
                if "<frozen" not in f.filename
            ]
            first_import[top] = stack[-14:]
        return None


def peak_rss_mb():
    # VmHWM, not getrusage's ru_maxrss: the latter keeps the high-water mark of the process
    # that exec'd us (Linux records the old memory's peak at exec, and subprocess uses
    # vfork), so a large pytest process would be counted as ours.
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


sys.meta_path.insert(0, Recorder())
customer, key = sys.argv[1], sys.argv[2]

import nextoffer.asgi
from starlette.testclient import TestClient

phases = {"import": sorted(m for m in FORBIDDEN if m in sys.modules)}
app = nextoffer.asgi.app_from_environment()
answers = {}
with TestClient(app) as client:  # runs the lifespan: platform.start_serving
    phases["start-up"] = sorted(m for m in FORBIDDEN if m in sys.modules)
    headers = {"X-API-Key": key}
    for name, path in (
        ("offers", f"/v1/customers/{customer}/offers"),
        ("churn-risk", f"/v1/customers/{customer}/churn-risk"),
        ("segment", f"/v1/customers/{customer}/segment"),
        ("metrics", "/metrics"),
    ):
        response = client.get(path, headers=headers)
        json_body = response.headers.get("content-type", "").endswith("json")
        body = response.json() if json_body else response.text
        answers[name] = {"status": response.status_code, "body": body}
    phases["answers"] = sorted(m for m in FORBIDDEN if m in sys.modules)
print(json.dumps({
    "peak_rss_mb": peak_rss_mb(),
    "phases": phases,
    "first_import": first_import,
    "answers": answers,
    "nextoffer_heavy": sorted(
        m for m in sys.modules
        if m.startswith(("nextoffer.pipelines", "nextoffer.models", "nextoffer.features"))
    ),
}))
"""


def test_serving_imports_no_training_stack(
    sqlite_world: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    var_dir = copy_world(sqlite_world, tmp_path_factory.mktemp("lean") / "world")
    database_url = f"sqlite:///{var_dir / 'nextoffer.db'}"
    env = world_env(var_dir, database_url)
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            customer = conn.execute(
                select(Customer.customer_id).order_by(Customer.customer_id).limit(1)
            ).scalar_one()
            # Nothing precomputed: the offers answer is scored live by the champion.
            conn.execute(delete(PrecomputedOffers))
    finally:
        engine.dispose()
    key = create_key(env, "viewer")

    done = subprocess.run(
        [sys.executable, "-c", PROBE % {"forbidden": FORBIDDEN}, customer, key],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])

    answers = report["answers"]
    assert answers["offers"]["status"] == 200, answers["offers"]
    assert answers["offers"]["body"]["source"] == "live"
    assert answers["offers"]["body"]["offers"]
    assert answers["churn-risk"]["status"] == 200, answers["churn-risk"]
    # Explained by the lean churn model in this process (no stored reasons for the band).
    assert answers["churn-risk"]["body"]["top_reasons"], answers["churn-risk"]
    assert answers["segment"]["status"] == 200, answers["segment"]
    # The quality gauges are collected on a scrape, from serving's table (not MLflow).
    assert answers["metrics"]["status"] == 200
    assert 'nextoffer_model_champion_version{model="offers"} 1.0' in answers["metrics"]["body"]
    where = "\n".join(
        f"{module} <- " + " <- ".join(f for f in reversed(stack) if "contextlib" not in f)
        for module, stack in report["first_import"].items()
    )
    for phase in ("import", "start-up", "answers"):
        assert report["phases"][phase] == [], f"after {phase}: imported by\n{where}"
    assert report["peak_rss_mb"] <= PEAK_RSS_MB, report["peak_rss_mb"]
    print(f"peak RSS {report['peak_rss_mb']:.1f} MB")
