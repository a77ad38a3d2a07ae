"""Dashboards and alerts against the real thing: a running nextoffer, a real Prometheus.

One small trained world (SQLite) is served by `nextoffer serve`, with a Celery worker on a
private Redis broker; Debian's postgres, redis and node exporters run against the shipped
PostgreSQL configuration, the broker and this host. A real Prometheus scrapes them all with
the shipped scrape jobs (targets swapped for local ports) and the shipped alert rules. After
a burst of traffic (offers, events in an A/B experiment, a precompute job on the worker):

- every metric name of every dashboard query and alert rule exists in real /metrics output;
- `up` is 1 for every target and nextoffer's metrics are there;
- every PromQL expression of every dashboard panel runs, and those on nextoffer's own
  metrics (API and worker) return at least one series;
- every alert rule loads and evaluates without error.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]  # no stubs installed
from sqlalchemy import select

from nextoffer.store.engine import make_engine
from nextoffer.store.schema import Customer
from tests.deploy.conftest import ShippedPostgres
from tests.deploy.tools import (
    DASHBOARDS_DIR,
    DEPLOY,
    PROMETHEUS_DIR,
    free_port,
    http_ok,
    metric_names,
    program,
    wait_for,
)
from tests.e2e.private_servers import RedisServer, require_program
from tests.e2e.server import NEXTOFFER, ApiServer, build_world, create_key, world_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Small: the world only has to produce every metric, not good models.
CUSTOMERS = 400
# Grafana's variables, as a dashboard over the last few minutes would expand them.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "10m", "$__interval": "15s"}
PROBE = DEPLOY / "probes" / "celery_ping.py"


@dataclass
class Process:
    """A background process whose output goes to a log file."""

    name: str
    args: list[str]
    log: Path
    env: dict[str, str] | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.args, stdout=out, stderr=subprocess.STDOUT, env=self.env
            )
        return self

    def alive(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited:\n{self.tail()}")
        return True

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@dataclass
class Stack:
    """Everything running for this module, and where."""

    api: ApiServer
    api_key: str
    worker_metrics: str
    worker_env: dict[str, str]
    exporters: dict[str, str]
    prometheus: str
    var_dir: Path
    processes: list[Process] = field(default_factory=list)

    def query(self, expr: str) -> dict[str, Any]:
        response = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": expr}, timeout=30)
        body: dict[str, Any] = response.json()
        return body


def scrape_config(exporters: dict[str, str], api: str, worker: str) -> dict[str, Any]:
    """The shipped prometheus.yml with local targets and a fast scrape interval."""
    shipped = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in shipped["scrape_configs"]}
    targets = {
        "nextoffer-api": api,
        "nextoffer-worker": worker,
        "postgres": exporters["postgres"],
        "node": exporters["node"],
    }
    scrape = []
    for name, target in targets.items():
        job = {k: v for k, v in jobs[name].items() if not k.endswith("_sd_configs")}
        job["static_configs"] = [{"targets": [target]}]
        scrape.append(job)
    # The redis job keeps its multi-target relabelling; only the exporter's address changes.
    redis_job = json.loads(json.dumps(jobs["redis"]))
    redis_job["static_configs"] = [
        {"targets": [exporters["redis_target"]], "labels": {"role": "broker"}},
        {"targets": [exporters["redis_cache_target"]], "labels": {"role": "cache"}},
    ]
    for rule in redis_job["relabel_configs"]:
        if rule.get("target_label") == "__address__":
            rule["replacement"] = exporters["redis"]
    scrape.append(redis_job)
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))],
        "scrape_configs": scrape,
    }


def traffic_burst(api: ApiServer, key: str, database_url: str, cache: RedisServer) -> None:
    """Offers, churn and segment answers, events of an A/B experiment, a 404, answers while
    the cache is down (degraded), a precompute job on the worker."""
    engine = make_engine(database_url)
    with engine.connect() as conn:
        customers = list(
            conn.execute(select(Customer.customer_id).order_by(Customer.customer_id).limit(40))
            .scalars()
            .all()
        )
    engine.dispose()
    headers = {"X-API-Key": key}
    with httpx.Client(base_url=api.url, headers=headers, timeout=60) as client:
        started = client.post(
            "/v1/experiments",
            json={
                "name": "deploy test",
                "unit": "customer",
                "variants": [
                    {"name": "control", "strategy": "control", "weight": 50},
                    {"name": "treatment", "strategy": "champion", "weight": 50},
                ],
            },
        )
        assert started.status_code == 201, started.text
        experiment = started.json()["experiment_id"]
        product = client.get("/v1/products").json()["items"][0]["product_id"]
        events = []
        for n, customer in enumerate(customers):
            for _ in range(2):  # the second answer comes from the cache
                assert client.get(f"/v1/customers/{customer}/offers").status_code == 200
            client.get(f"/v1/customers/{customer}/churn-risk")
            client.get(f"/v1/customers/{customer}/segment")
            kinds = (
                ["offer_impression"] + ["offer_click"] * (n % 2) + ["offer_accept"] * (n % 3 == 0)
            )
            kinds += ["offer_decline"] * (n % 5 == 0)
            events += [
                {
                    "event_id": f"deploy-{experiment}-{n}-{i}",
                    "customer_id": customer,
                    "event_type": kind,
                    "product_id": product,
                }
                for i, kind in enumerate(kinds)
            ]
        stored = client.post("/v1/events", json={"events": events})
        assert stored.status_code == 201, stored.text
        assert client.get("/v1/customers/no-such-customer/offers").status_code == 404
        stopped = client.post(f"/v1/experiments/{experiment}/stop", json={})
        assert stopped.status_code == 200, stopped.text
        # The cache goes away for a moment: answers still come, marked degraded. (After the
        # experiment: its variants are answered without the offers cache.)
        cache.stop()
        degraded = [client.get(f"/v1/customers/{c}/offers").json() for c in customers[-3:]]
        assert all(answer["degraded"] for answer in degraded), degraded
        cache.start()
        wait_for(
            lambda: client.get("/ready").json()["components"]["cache"]["status"] == "ok",
            30,
            "the API did not see the cache come back",
        )
        job = client.post("/v1/jobs", json={"kind": "precompute", "params": {}})
        assert job.status_code == 202, job.text
        job_id = job.json()["job_id"]

        def finished() -> bool:
            status = client.get(f"/v1/jobs/{job_id}").json()["status"]
            assert status != "failed", client.get(f"/v1/jobs/{job_id}").text
            return bool(status == "succeeded")

        wait_for(finished, 300, "the precompute job did not finish on the worker")


def serving(process: Process, url: str) -> bool:
    """The process still runs and `url` answers 200."""
    return process.alive() and http_ok(url)


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, shipped_postgres: ShippedPostgres
) -> Iterator[Stack]:
    prometheus_bin = program("prometheus")
    exporter_bins = {
        "postgres": program("prometheus-postgres-exporter"),
        "redis": program("prometheus-redis-exporter"),
        "node": program("prometheus-node-exporter"),
    }
    redis_server = require_program("redis-server")
    root = tmp_path_factory.mktemp("deploy-live")
    processes: list[Process] = []
    broker = RedisServer(redis_server, root / "broker.log").start()
    cache = RedisServer(redis_server, root / "cache.log").start()
    api: ApiServer | None = None
    try:
        var_dir = root / "world"
        database_url = f"sqlite:///{var_dir / 'nextoffer.db'}"
        build_world(var_dir, database_url, customers=CUSTOMERS)
        env = world_env(var_dir, database_url)
        key = create_key(env, "operator")
        env["NEXTOFFER_BROKER_URL"] = broker.url
        env["NEXTOFFER_CACHE_URL"] = cache.url
        worker_port = free_port()
        env["NEXTOFFER_WORKER_METRICS_PORT"] = str(worker_port)
        worker = Process(
            "worker",
            [NEXTOFFER, "worker", "--concurrency", "2"],
            root / "worker.log",
            env=dict(env),
        ).start()
        processes.append(worker)
        # As compose runs it: the API's multiprocess metrics in a folder of its own.
        api_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(root / "api-metrics")}
        (root / "api-metrics").mkdir()
        api = ApiServer(api_env, root / "api.log").start(timeout_s=120)
        worker_metrics = f"http://127.0.0.1:{worker_port}/metrics"
        wait_for(lambda: worker.alive() and http_ok(worker_metrics), 120, "worker metrics")

        ports = {name: free_port() for name in exporter_bins}
        secret = root / "exporter-password"
        secret.write_text("exporter-password")
        exporter_env = {
            "PATH": os.environ.get("PATH", ""),
            "DATA_SOURCE_URI": f"127.0.0.1:{shipped_postgres.port}/nextoffer?sslmode=disable",
            "DATA_SOURCE_USER": "postgres_exporter",
            "DATA_SOURCE_PASS_FILE": str(secret),
        }
        passwords = root / "redis-passwords.json"
        passwords.write_text(
            json.dumps({broker.url.rsplit("/", 1)[0]: "", cache.url.rsplit("/", 1)[0]: ""})
        )
        commands = {
            "postgres": [f"--web.listen-address=127.0.0.1:{ports['postgres']}"],
            "redis": [
                f"-web.listen-address=127.0.0.1:{ports['redis']}",
                f"-redis.password-file={passwords}",
                "-redis.addr=",
            ],
            "node": [f"--web.listen-address=127.0.0.1:{ports['node']}"],
        }
        for name, args in commands.items():
            process = Process(
                name, [exporter_bins[name], *args], root / f"{name}-exporter.log", exporter_env
            ).start()
            processes.append(process)
            wait_for(
                partial(serving, process, f"http://127.0.0.1:{ports[name]}/metrics"),
                30,
                f"{name} exporter",
            )
        exporters = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
        exporters["redis_target"] = broker.url.rsplit("/", 1)[0]
        exporters["redis_cache_target"] = cache.url.rsplit("/", 1)[0]

        prometheus_port = free_port()
        config = root / "prometheus.yml"
        config.write_text(
            yaml.safe_dump(
                scrape_config(exporters, f"127.0.0.1:{api.port}", f"127.0.0.1:{worker_port}")
            )
        )
        prometheus = Process(
            "prometheus",
            [
                prometheus_bin,
                f"--config.file={config}",
                f"--storage.tsdb.path={root / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prometheus_port}",
            ],
            root / "prometheus.log",
        ).start()
        processes.append(prometheus)
        prometheus_url = f"http://127.0.0.1:{prometheus_port}"
        wait_for(
            lambda: prometheus.alive() and http_ok(f"{prometheus_url}/-/ready"), 60, "Prometheus"
        )
        # Counters must be seen before and after the burst for rate() to have two points.
        time.sleep(3)
        traffic_burst(api, key, database_url, cache)
        time.sleep(4)
        yield Stack(
            api=api,
            api_key=key,
            worker_metrics=worker_metrics,
            worker_env=dict(env),
            exporters=exporters,
            prometheus=prometheus_url,
            var_dir=var_dir,
            processes=processes,
        )
    finally:
        if api is not None:
            api.stop()
        for process in reversed(processes):
            process.stop()
        cache.stop()
        broker.stop()


# --- which metric names a query uses ---------------------------------------------------------

_KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (not functions, labels or keywords)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        word = match.group(0)
        after = text[match.end() :].lstrip()
        before = text[: match.start()]
        if after.startswith("(") or word.lower() in _KEYWORDS or before[-1:].isdigit():
            continue
        names.add(word)
    return names


def test_the_metric_name_reader_reads_names_and_nothing_else() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, route) (rate(http_request_duration_seconds_bucket"
        '{job="nextoffer-api", route!~"/health"}[5m]))) > 0.3 and on () count(up == 1) > 0 '
        "or time() - max(nextoffer_job_last_success_timestamp_seconds offset 5m) > 26 * 3600"
    )
    assert promql_metric_names(expr) == {
        "http_request_duration_seconds_bucket",
        "up",
        "nextoffer_job_last_success_timestamp_seconds",
    }


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel, PromQL) for every Prometheus query of every dashboard."""
    found = []
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel["targets"]:
                if target["datasource"]["type"] == "prometheus":
                    found.append((path.name, panel["title"], target["expr"]))
    return found


def alert_expressions() -> list[tuple[str, str]]:
    found = []
    for path in sorted((PROMETHEUS_DIR / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            found += [(rule["alert"], rule["expr"]) for rule in group["rules"] if "alert" in rule]
    return found


def expand(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def app_metric(name: str) -> bool:
    return name.startswith(("nextoffer_", "http_request"))


# --- the tests -----------------------------------------------------------------------------


def real_names(stack: Stack) -> dict[str, set[str]]:
    """Metric names in the real outputs: the API, the worker, each exporter."""
    sources = {
        "api": f"{stack.api.url}/metrics",
        "worker": stack.worker_metrics,
        "postgres exporter": f"http://{stack.exporters['postgres']}/metrics",
        "node exporter": f"http://{stack.exporters['node']}/metrics",
        "redis exporter": f"http://{stack.exporters['redis']}/scrape?target="
        + stack.exporters["redis_cache_target"],
    }
    names = {}
    for source, url in sources.items():
        response = httpx.get(url, timeout=30)
        assert response.status_code == 200, (source, response.text[:300])
        names[source] = metric_names(response.text)
        assert names[source], f"{source}: no metrics at all"
    return names


def test_every_metric_in_dashboards_and_alerts_exists(stack: Stack) -> None:
    names = real_names(stack)
    everything = set().union(*names.values()) | {"up"}  # `up` is Prometheus's own
    used: dict[str, set[str]] = {}
    for board, panel, expr in dashboard_queries():
        for name in promql_metric_names(expr):
            used.setdefault(name, set()).add(f"{board}: {panel}")
    for alert, expr in alert_expressions():
        for name in promql_metric_names(expr):
            used.setdefault(name, set()).add(f"alert {alert}")
    missing = {name: sorted(where) for name, where in used.items() if name not in everything}
    assert missing == {}, json.dumps(missing, indent=1)
    # The check reads every family: a good share of the names come from each source.
    for source in ("api", "worker", "postgres exporter", "node exporter", "redis exporter"):
        assert set(used) & names[source], f"no query uses the {source}'s metrics"
    # The job gauges and Celery metrics the alerts and the Jobs dashboard rely on.
    for name in (
        "nextoffer_job_last_success_timestamp_seconds",
        "nextoffer_job_last_run_status",
    ):
        assert name in names["api"], name
    for name in (
        "nextoffer_celery_tasks_total",
        "nextoffer_celery_task_duration_seconds_bucket",
        "nextoffer_celery_active_tasks",
        "nextoffer_celery_queue_length",
    ):
        assert name in names["worker"], name


def test_prometheus_scrapes_every_target(stack: Stack) -> None:
    up = stack.query("up")
    assert up["status"] == "success"
    targets = {
        (r["metric"]["job"], r["metric"].get("role", "")): float(r["value"][1])
        for r in up["data"]["result"]
    }
    assert targets == {
        ("nextoffer-api", ""): 1.0,
        ("nextoffer-worker", ""): 1.0,
        ("postgres", ""): 1.0,
        ("redis", "broker"): 1.0,
        ("redis", "cache"): 1.0,
        ("node", ""): 1.0,
    }
    api_up = stack.query('up{job="nextoffer-api"} == 1')["data"]["result"]
    assert len(api_up) == 1
    served = stack.query('sum(nextoffer_offers_served_total{job="nextoffer-api"})')
    assert float(served["data"]["result"][0]["value"][1]) >= 80  # 40 customers x 2
    assert float(stack.query("pg_up")["data"]["result"][0]["value"][1]) == 1.0
    redis_up = stack.query("redis_up")["data"]["result"]
    assert {r["metric"]["role"]: float(r["value"][1]) for r in redis_up} == {
        "broker": 1.0,
        "cache": 1.0,
    }
    degraded = stack.query("sum(nextoffer_degraded_answers_total)")["data"]["result"]
    assert float(degraded[0]["value"][1]) >= 3
    # honor_labels keeps the job gauges' own `job` label (etl, precompute, ...).
    jobs = stack.query("nextoffer_job_last_run_status")["data"]["result"]
    assert "precompute" in {r["metric"]["job"] for r in jobs}


def test_every_dashboard_query_runs_and_app_queries_return_series(stack: Stack) -> None:
    failures = []
    empty = []
    checked = 0
    for board, panel, expr in dashboard_queries():
        answer = stack.query(expand(expr))
        if answer.get("status") != "success":
            failures.append(f"{board}: {panel}: {answer.get('error')}: {expr}")
            continue
        checked += 1
        names = promql_metric_names(expr)
        if names and all(app_metric(n) for n in names) and not answer["data"]["result"]:
            empty.append(f"{board}: {panel}: {expr}")
    assert failures == [], "\n".join(failures)
    assert empty == [], "no series for:\n" + "\n".join(empty)
    assert checked == len(dashboard_queries()) > 60


def test_every_alert_rule_loads_and_evaluates(stack: Stack) -> None:
    def evaluated() -> bool:
        groups = httpx.get(f"{stack.prometheus}/api/v1/rules", timeout=30).json()["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return bool(rules) and all(r.get("lastEvaluation", "").startswith("20") for r in rules)

    wait_for(evaluated, 30, "every rule evaluated once")
    groups = httpx.get(f"{stack.prometheus}/api/v1/rules", timeout=30).json()["data"]["groups"]
    rules = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(rules) == {name for name, _ in alert_expressions()}
    broken = {name: r.get("lastError") for name, r in rules.items() if r["health"] != "ok"}
    assert broken == {}
    # A healthy little stack: no API, worker or cache alert is active.
    active = {name for name, r in rules.items() if r["state"] != "inactive"}
    assert not active & {"ApiAbsent", "CeleryWorkersAbsent", "CacheDown", "ApiErrorRateHigh"}


def test_the_worker_probe_pings_its_own_node(stack: Stack) -> None:
    env = {k: v for k, v in stack.worker_env.items() if not k.startswith("PROBE_")}
    ok = subprocess.run(
        [NEXTOFFER_PYTHON, str(PROBE), "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"celery@{socket.gethostname()}: pong" in ok.stdout
    other = subprocess.run(
        [NEXTOFFER_PYTHON, str(PROBE), "worker"],
        env={**env, "PROBE_HOSTNAME": "another-container"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert other.returncode == 1 and "no reply" in other.stdout


NEXTOFFER_PYTHON = str(Path(NEXTOFFER).with_name("python"))


def test_the_beat_probe_pings_beat(stack: Stack, tmp_path: Path) -> None:
    beat = Process(
        "beat", [NEXTOFFER, "beat"], tmp_path / "beat.log", env=dict(stack.worker_env)
    ).start()
    try:

        def answers() -> bool:
            beat.alive()
            done = subprocess.run(
                [NEXTOFFER_PYTHON, str(PROBE), "beat"],
                env=stack.worker_env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            return done.returncode == 0

        wait_for(answers, 90, "beat did not answer the probe")
    finally:
        beat.stop()
