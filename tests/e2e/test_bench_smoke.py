"""`python -m bench.serve --smoke` runs end to end and measures what it says it measures.

The serving benchmark on its smallest world (1,500 customers, 2 s per scenario), in a
subprocess with its own world folder under tmp_path, so the run neither reuses a stale world
nor writes into bench/results/. Only the shape of the result is checked: every scenario
made requests without errors, percentiles are ordered, and the answers came from where
the scenario means them to (the cache, or live scoring). No timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Build the world (~15 s), start two servers, six scenarios of at most 2 s each.
TIMEOUT_S = 300

pytestmark = [pytest.mark.slow, pytest.mark.timeout(TIMEOUT_S + 30)]

EXPECTED_SOURCES = {
    "cache_fill": {"precomputed"},
    "cached": {"cache"},
    "live_warmup": {"live"},
    "live": {"live"},
    "live_concurrency_1": {"live"},
    "cached_during_logins": {"cache"},
}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("bench-serve")
    out = tmp / "serve-smoke.json"
    command = [sys.executable, "-m", "bench.serve", "--smoke"]
    command += ["--out", str(out), "--worlds", str(tmp / "worlds")]
    done = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, (
        f"bench.serve failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def test_every_scenario_ran_without_errors(smoke: dict[str, Any]) -> None:
    scenarios = smoke["scenarios"]
    assert {"bare", "cached", "live"} <= scenarios.keys()
    for name in ("bare", "logins", *EXPECTED_SOURCES):
        scenario = scenarios[name]
        assert scenario["requests"] > 0, name
        assert scenario["errors"] == 0, (name, scenario["error_kinds"])
        latency = scenario["latency_ms"]
        assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"], name
        assert scenario["rps"] > 0, name


def test_answers_came_from_the_intended_source(smoke: dict[str, Any]) -> None:
    scenarios = smoke["scenarios"]
    for name, sources in EXPECTED_SOURCES.items():
        seen = scenarios[name]["sources"]
        assert set(seen) == sources, (name, seen)
        assert sum(seen.values()) == scenarios[name]["requests"], name
    assert scenarios["bare"]["sources"] == {}


def test_result_records_machine_ratios_memory_and_targets(smoke: dict[str, Any]) -> None:
    assert smoke["machine"]["cpus"] >= 1
    assert smoke["settings"]["smoke"] is True
    assert smoke["settings"]["customers"] == 1500
    for key in ("cached_rps_to_bare", "cached_p99_to_bare", "live_p95_to_bare"):
        assert smoke["ratios"][key] > 0, key
    memory = smoke["memory_mb"]
    assert 0 < memory["api_after"]["rss_mb"] <= memory["api_after"]["peak_rss_mb"]
    assert memory["bare_after"]["rss_mb"] > 0
    assert smoke["targets"]["asserted"] is False
    assert set(smoke["targets"]["goals"]) == {
        "cached_p99_to_bare_max",
        "cached_rps_to_bare_min",
        "live_server_cpu_to_bare_max",
        "live_p95_to_bare_max",
        "rss_mb",
    }
    assert all(
        isinstance(met, bool) for key, met in smoke["targets"].items() if key.endswith("_met")
    )


def test_the_server_recorded_one_exposure_per_customer_answered(smoke: dict[str, Any]) -> None:
    # Exposures are on by default: every distinct customer answered with offers is exposed
    # once (the cached scenario asks the same customers over and over).
    exposures = smoke["exposures"]
    assert 0 < exposures["rows"] <= exposures["customers_asked"]
    assert exposures["by_arm"].keys() == {"treated"}  # no control group in the benchmark


def test_the_server_ran_with_auditing_on(smoke: dict[str, Any]) -> None:
    # Auditing is on by default: every answer about one customer is an audit entry, written
    # in batches off the request path (and once more as the server stops).
    answered = sum(smoke["scenarios"][name]["requests"] for name in EXPECTED_SOURCES)
    assert smoke["audit"].keys() == {"customer.read"}
    assert smoke["audit"]["customer.read"] >= answered
    assert "auditing on" in smoke["settings"]["server"]
