"""The Grafana dashboards: generated from deploy/grafana/generate.py, complete, consistent.

(Whether every query's metrics exist and every expression runs is test_live_metrics.py's
business.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped, unused-ignore]  # no stubs installed

from tests.deploy.tools import DASHBOARDS_DIR, DEPLOY

GENERATOR = DEPLOY / "grafana" / "generate.py"
# The telco seed's five, then Churn and Jobs/Data freshness.
TITLES = {
    "system.json": "nextoffer / System overview",
    "api.json": "nextoffer / API performance",
    "quality.json": "nextoffer / Recommendation quality",
    "ab.json": "nextoffer / A/B test results",
    "database.json": "nextoffer / Database health",
    "churn.json": "nextoffer / Churn",
    "jobs.json": "nextoffer / Jobs and data freshness",
}


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS_DIR.glob("*.json"))}


def test_checked_in_json_is_what_the_generator_writes(tmp_path: Path) -> None:
    check = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    # And --check does notice a difference.
    for path in DASHBOARDS_DIR.glob("*.json"):
        (tmp_path / path.name).write_text(path.read_text())
    edited = tmp_path / "api.json"
    edited.write_text(edited.read_text().replace("p95 latency", "p96 latency"))
    stale = subprocess.run(
        [sys.executable, str(GENERATOR), "--check", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert stale.returncode == 1 and "api.json" in stale.stdout


def test_the_seven_dashboards_are_there() -> None:
    boards = dashboards()
    assert {name: board["title"] for name, board in boards.items()} == TITLES
    uids = [board["uid"] for board in boards.values()]
    assert len(set(uids)) == len(uids)


def test_panels_are_laid_out_and_use_provisioned_datasources() -> None:
    provisioned = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "datasources.yml").read_text()
    )
    datasources = {d["uid"]: d["type"] for d in provisioned["datasources"]}
    for name, board in dashboards().items():
        ids = [panel["id"] for panel in board["panels"]]
        assert len(set(ids)) == len(ids), name
        for panel in board["panels"]:
            where = f"{name}: {panel['title']}"
            grid = panel["gridPos"]
            assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, where
            assert panel["targets"], f"{where}: no query"
            source = panel["datasource"]
            assert datasources.get(source["uid"]) == source["type"], where
            for target in panel["targets"]:
                assert target["expr"].strip(), where
                assert target["datasource"] == source, where


def test_the_seed_panels_are_present() -> None:
    boards = dashboards()

    def exprs(name: str) -> str:
        return " ".join(t["expr"] for p in boards[name]["panels"] for t in p["targets"])

    api = exprs("api.json")
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}," in api
    assert 'status=~"5.."' in api and "rate(http_requests_total" in api
    quality = exprs("quality.json")
    assert 'event_type="offer_click"' in quality and 'event_type="offer_accept"' in quality
    assert 'metric="ndcg_at_10"' in quality
    assert "sum by (experiment, variant)" in exprs("ab.json")
    assert "pg_stat_activity_count" in exprs("database.json")
    assert "node_cpu_seconds_total" in exprs("system.json")
    assert "nextoffer_churn_customers" in exprs("churn.json")
    assert "nextoffer_job_last_success_timestamp_seconds" in exprs("jobs.json")
    kinds = {p["type"] for board in boards.values() for p in board["panels"]}
    assert "logs" in kinds, "no Grafana logs panel for the shipped JSON logs"


def test_grafana_provisions_the_dashboard_folder_compose_mounts() -> None:
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "dashboards.yml").read_text()
    )["providers"][0]
    compose = (DEPLOY / "compose.yaml").read_text()
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in compose
    assert provider["allowUiUpdates"] is False
