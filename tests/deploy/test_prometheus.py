"""Prometheus and Alertmanager files through their own tools (Debian's promtool and amtool).

`promtool test rules` runs deploy/prometheus/tests/alerts_test.yml as shipped, in which every
alert fires on bad series (with its labels and rendered annotations) and stays silent on good
ones; this module also checks that the test file covers every alert both ways, and that each
alert carries what an on-call person needs.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]  # no stubs installed

from tests.deploy.tools import DEPLOY, PROMETHEUS_DIR, ROOT, program, run

RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
# What every alert carries (checked below), and so what every expected alert lists.
ANNOTATIONS = ("summary", "description", "runbook", "runbook_url")
ALERTS_TEST = PROMETHEUS_DIR / "tests" / "alerts_test.yml"
ALERTMANAGER = DEPLOY / "alertmanager" / "alertmanager.yml"
# The list of alerts, by the names they have here.
REQUIRED_ALERTS = {
    "ApiLatencyHigh",  # p95 > 300 ms
    "ApiErrorRateHigh",  # > 2 %
    "DatabaseConnectionsHigh",  # > 80 %
    "DiskUsageHigh",  # > 85 %
    "DataStale",  # ETL older than 26 h
    "ModelQualityDegraded",
    "ModelDriftFlagged",
    "BackupTooOld",
    "ServiceDown",
    "CacheHitRatioLow",  # < 80 %
}


def alert_rules() -> list[dict[str, Any]]:
    rules = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules += [r for r in group["rules"] if "alert" in r]
    return rules


def test_promtool_accepts_the_config_and_the_rules() -> None:
    promtool = program("promtool")
    config = run([promtool, "check", "config", str(PROMETHEUS_DIR / "prometheus.yml")])
    assert config.returncode == 0, config.stdout + config.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in config.stdout
    rules = run([promtool, "check", "rules", *map(str, RULE_FILES)])
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert rules.stdout.count("SUCCESS") == len(RULE_FILES)


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    promtool = program("promtool")
    broken = tmp_path / "broken.yml"
    text = (PROMETHEUS_DIR / "rules" / "nextoffer.yml").read_text()
    broken.write_text(text.replace("histogram_quantile(0.95,", "histogram_quantile(0.95,,", 1))
    assert broken.read_text() != text
    done = run([promtool, "check", "rules", str(broken)])
    assert done.returncode != 0


def test_scrape_settings_are_the_seeds() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    assert config["global"]["scrape_interval"] == "15s"
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"nextoffer-api", "nextoffer-worker", "postgres", "redis", "node"} <= set(jobs)
    assert jobs["nextoffer-api"]["dns_sd_configs"][0]["names"] == ["api"]
    assert jobs["nextoffer-worker"]["dns_sd_configs"][0]["port"] == 9101
    compose = (DEPLOY / "compose.yaml").read_text()
    assert "--storage.tsdb.retention.time=30d" in compose


def test_every_alert_has_a_duration_a_severity_and_a_runbook() -> None:
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names)), "duplicate alert names"
    assert set(names) >= REQUIRED_ALERTS
    operations = (ROOT / "docs" / "operations.md").read_text().lower()
    anchors = set(re.findall(r"^#+ .*?\b(\w+)\s*$", operations, re.MULTILINE))
    for rule in rules:
        name = rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), f"{name}: no `for:`"
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        notes = rule["annotations"]
        for key in ANNOTATIONS:
            assert notes.get(key, "").strip(), f"{name}: no {key}"
        anchor = notes["runbook_url"].removeprefix("docs/operations.md#")
        assert anchor == name.lower(), f"{name}: runbook_url {notes['runbook_url']}"
        assert anchor in anchors, f"docs/operations.md has no section for {name}"


def test_thresholds_are_the_seeds() -> None:
    expressions = {r["alert"]: " ".join(r["expr"].split()) for r in alert_rules()}
    assert "histogram_quantile(0.95," in expressions["ApiLatencyHigh"]
    assert expressions["ApiLatencyHigh"].endswith("> 0.3")
    assert expressions["ApiErrorRateHigh"].endswith("> 0.02")
    assert expressions["DatabaseConnectionsHigh"].endswith("> 0.8")
    assert expressions["DiskUsageHigh"].endswith("> 0.85")
    assert "> 26 * 3600" in expressions["DataStale"]
    assert "> 7 * 3600" in expressions["BackupTooOld"]
    assert "< 0.8" in expressions["CacheHitRatioLow"]


def test_every_alert_fires_and_stays_silent_in_promtool_unit_tests() -> None:
    promtool = program("promtool")
    tests = yaml.safe_load(ALERTS_TEST.read_text())
    fired: set[str] = set()
    silent: set[str] = set()
    for case in tests["tests"]:
        for check in case["alert_rule_test"]:
            (fired if check.get("exp_alerts") else silent).add(check["alertname"])
            # promtool compares annotations verbatim: an expectation without them would fail.
            for alert in check.get("exp_alerts") or []:
                assert set(alert.get("exp_annotations", {})) == set(ANNOTATIONS), case["name"]
    names = {r["alert"] for r in alert_rules()}
    assert names - fired == set(), "alerts never made to fire"
    assert names - silent == set(), "alerts never shown to stay silent"
    # The shipped files, unmodified, the way an operator runs them (from another folder).
    done = run([promtool, "test", "rules", str(ALERTS_TEST)], cwd=Path("/"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def shipped_copy(tmp_path: Path) -> Path:
    """The rule files and the unit tests in tmp_path, laid out as shipped (tests/../rules)."""
    shutil.copytree(PROMETHEUS_DIR / "rules", tmp_path / "rules")
    shutil.copytree(PROMETHEUS_DIR / "tests", tmp_path / "tests")
    return tmp_path / "tests" / ALERTS_TEST.name


@pytest.mark.parametrize(
    ("shipped", "changed"),
    [
        ("severity: critical", "severity: warning"),
        # An annotation rendered from its template with the test's series: text and value.
        ("took up to 968.8ms.", "took up to 1s."),
    ],
    ids=["label", "annotation"],
)
def test_promtool_unit_tests_can_fail(tmp_path: Path, shipped: str, changed: str) -> None:
    """A wrong label or annotation fails the run: the unit tests are not vacuous."""
    promtool = program("promtool")
    copy = shipped_copy(tmp_path)  # unchanged, it passes: the test above
    text = copy.read_text()
    assert shipped in text
    copy.write_text(text.replace(shipped, changed, 1))
    done = run([promtool, "test", "rules", str(copy)])
    assert done.returncode != 0
    assert "FAILED" in done.stdout + done.stderr


def local_alertmanager_config(tmp_path: Path) -> Path:
    """The shipped config with its template glob pointed at deploy/alertmanager/templates."""
    config = tmp_path / "alertmanager.yml"
    templates = DEPLOY / "alertmanager" / "templates"
    config.write_text(
        ALERTMANAGER.read_text().replace("/etc/alertmanager/templates", str(templates))
    )
    return config


def test_amtool_accepts_the_alertmanager_config(tmp_path: Path) -> None:
    amtool = program("amtool")
    for path in (ALERTMANAGER, local_alertmanager_config(tmp_path)):
        done = run([amtool, "check-config", str(path)])
        assert done.returncode == 0, done.stdout + done.stderr
        assert "SUCCESS" in done.stdout
    broken = tmp_path / "broken.yml"
    broken.write_text(
        ALERTMANAGER.read_text().replace("receiver: team-slack", "receiver: nobody", 1)
    )
    assert run([amtool, "check-config", str(broken)]).returncode != 0


def test_alerts_are_routed_by_severity_with_the_seeds_grouping(tmp_path: Path) -> None:
    amtool = program("amtool")
    config = local_alertmanager_config(tmp_path)

    def receiver(*labels: str) -> str:
        done = run([amtool, "config", "routes", "test", f"--config.file={config}", *labels])
        return done.stdout.strip()

    assert receiver("severity=critical", "alertname=ServiceDown") == "oncall"
    assert receiver("severity=warning", "alertname=ApiLatencyHigh") == "team-slack"
    route = yaml.safe_load(ALERTMANAGER.read_text())["route"]
    assert route["group_wait"] == "30s" and route["repeat_interval"] == "1h"
    assert route["group_by"] == ["alertname"]
    receivers = yaml.safe_load(ALERTMANAGER.read_text())["receivers"]
    oncall = next(r for r in receivers if r["name"] == "oncall")
    assert oncall["email_configs"] and oncall["slack_configs"]
    rendered = run(
        [
            amtool,
            "template",
            "render",
            f"--template.glob={DEPLOY / 'alertmanager' / 'templates' / '*.tmpl'}",
            '--template.text={{ template "nextoffer.slack.text" . }}',
        ]
    )
    assert rendered.returncode == 0, rendered.stderr
    assert "Runbook:" in rendered.stdout
