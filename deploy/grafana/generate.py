"""Grafana dashboards as code: writes deploy/grafana/dashboards/*.json (`--check` compares).

Run `make dashboards` after editing; tests/deploy/test_dashboards.py fails when the JSON
files differ from what this script writes, and tests/deploy/test_live_metrics.py sends every
PromQL expression below to a real Prometheus scraping a running nextoffer. Standard library
only, so it runs anywhere; the JSON is Grafana's dashboard model (schemaVersion 39).
"""

# PromQL expressions stay whole on one line each: readable, and greppable by metric name.
# ruff: noqa: E501

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}
LOKI = {"type": "loki", "uid": "loki"}
TAGS = ["nextoffer"]
# Probes would flatter every latency figure.
REAL_ROUTES = 'job="nextoffer-api", route!~"/health|/ready|/metrics"'
API = 'job="nextoffer-api"'
DISKS = 'fstype!~"tmpfs|overlay|squashfs|ramfs|nsfs"'
NICS = 'device!~"lo|veth.*|docker.*|br-.*"'


@dataclass
class Query:
    """One PromQL (or LogQL) expression with its legend."""

    expr: str
    legend: str = ""
    instant: bool = False


@dataclass
class Panel:
    """A panel; its position is given by the Dashboard's layout."""

    title: str
    kind: str
    queries: list[Query]
    unit: str = "short"
    width: int = 12
    height: int = 8
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    thresholds: list[tuple[float | None, str]] = field(default_factory=list)
    datasource: dict[str, str] = field(default_factory=lambda: dict(PROMETHEUS))
    minimum: float | None = None
    maximum: float | None = None


def q(expr: str, legend: str = "", *, instant: bool = False) -> Query:
    """A query (shorthand)."""
    return Query(" ".join(expr.split()), legend, instant)


def timeseries(title: str, *queries: Query, unit: str = "short", **extra: Any) -> Panel:
    """A time series graph."""
    return Panel(title, "timeseries", list(queries), unit=unit, **extra)


def stat(title: str, *queries: Query, unit: str = "short", width: int = 6, **extra: Any) -> Panel:
    """A single big number (the last value)."""
    return Panel(title, "stat", list(queries), unit=unit, width=width, height=5, **extra)


def bars(title: str, *queries: Query, unit: str = "short", **extra: Any) -> Panel:
    """A bar gauge of instant values, one bar per series."""
    instant = [Query(x.expr, x.legend, True) for x in queries]
    return Panel(title, "bargauge", instant, unit=unit, **extra)


def table(title: str, *queries: Query, unit: str = "short", **extra: Any) -> Panel:
    """A table of instant values, one row per series."""
    instant = [Query(x.expr, x.legend, True) for x in queries]
    return Panel(title, "table", instant, unit=unit, **extra)


def logs(title: str, expr: str, width: int = 24, height: int = 10) -> Panel:
    """Log lines from Loki (profile `logs`)."""
    return Panel(title, "logs", [Query(expr)], width=width, height=height, datasource=dict(LOKI))


@dataclass
class Dashboard:
    """A dashboard: panels laid out left to right, wrapped at 24 grid units."""

    uid: str
    title: str
    description: str
    panels: list[Panel]

    def to_json(self) -> dict[str, Any]:
        """Grafana's dashboard model."""
        x = y = row_height = 0
        rendered = []
        for number, panel in enumerate(self.panels, start=1):
            if x + panel.width > 24:
                x, y, row_height = 0, y + row_height, 0
            rendered.append(_panel_json(number, panel, x, y))
            x += panel.width
            row_height = max(row_height, panel.height)
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": TAGS,
            "timezone": "utc",
            "editable": False,
            "graphTooltip": 1,
            "refresh": "30s",
            "schemaVersion": 39,
            "version": 1,
            "time": {"from": "now-6h", "to": "now"},
            "timepicker": {},
            "templating": {"list": []},
            "annotations": {"list": []},
            "links": [
                {
                    "title": "nextoffer dashboards",
                    "type": "dashboards",
                    "tags": TAGS,
                    "asDropdown": True,
                }
            ],
            "panels": rendered,
        }


def _panel_json(number: int, panel: Panel, x: int, y: int) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [
        {"value": value, "color": color} for value, color in (panel.thresholds or [(None, "green")])
    ]
    defaults: dict[str, Any] = {
        "unit": panel.unit,
        "thresholds": {"mode": "absolute", "steps": steps},
    }
    if panel.minimum is not None:
        defaults["min"] = panel.minimum
    if panel.maximum is not None:
        defaults["max"] = panel.maximum
    targets = []
    for ref, query in zip("ABCDEFGHIJ", panel.queries, strict=False):
        target: dict[str, Any] = {"refId": ref, "datasource": panel.datasource, "expr": query.expr}
        if panel.datasource["type"] == "prometheus":
            target["legendFormat"] = query.legend or "__auto"
            target["instant"] = query.instant
            target["range"] = not query.instant
        targets.append(target)
    options = dict(panel.options)
    if panel.kind == "stat":
        options.setdefault(
            "reduceOptions", {"calcs": ["lastNotNull"], "fields": "", "values": False}
        )
        options.setdefault("colorMode", "value")
    if panel.kind == "logs":
        options.setdefault("showTime", True)
        options.setdefault("wrapLogMessage", True)
        options.setdefault("sortOrder", "Descending")
    return {
        "id": number,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": panel.datasource,
        "gridPos": {"x": x, "y": y, "w": panel.width, "h": panel.height},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": targets,
    }


def _percent(good: str, total: str) -> str:
    return f"100 * ({good}) / ({total})"


def system() -> Dashboard:
    """Seed dashboard 1: CPU, memory, disk, network, Redis, targets."""
    return Dashboard(
        "nextoffer-system",
        "nextoffer / System overview",
        "The host (node exporter), both Redis servers and every scrape target.",
        [
            stat(
                "Targets down",
                q("count(up == 0) or vector(0)"),
                thresholds=[(None, "green"), (1, "red")],
            ),
            stat(
                "CPU used",
                q('100 * (1 - avg(rate(node_cpu_seconds_total{mode="idle"}[$__rate_interval])))'),
                unit="percent",
                thresholds=[(None, "green"), (80, "orange"), (95, "red")],
            ),
            stat(
                "Memory used",
                q(
                    "100 * (1 - sum(node_memory_MemAvailable_bytes) / sum(node_memory_MemTotal_bytes))"
                ),
                unit="percent",
                thresholds=[(None, "green"), (80, "orange"), (95, "red")],
            ),
            stat(
                "Fullest disk",
                q(
                    f"100 * max(1 - node_filesystem_avail_bytes{{{DISKS}}} / node_filesystem_size_bytes{{{DISKS}}})"
                ),
                unit="percent",
                thresholds=[(None, "green"), (85, "orange"), (95, "red")],
            ),
            timeseries(
                "CPU by mode",
                q(
                    'sum by (mode) (rate(node_cpu_seconds_total{mode!="idle"}[$__rate_interval]))',
                    "{{mode}}",
                ),
                unit="short",
            ),
            timeseries(
                "Load average",
                q("node_load1", "1 min"),
                q("node_load5", "5 min"),
                q("node_load15", "15 min"),
            ),
            timeseries(
                "Memory",
                q("node_memory_MemTotal_bytes - node_memory_MemAvailable_bytes", "used"),
                q("node_memory_MemAvailable_bytes", "available"),
                unit="bytes",
            ),
            timeseries(
                "Disk used by mount point",
                q(
                    f"100 * (1 - node_filesystem_avail_bytes{{{DISKS}}} / node_filesystem_size_bytes{{{DISKS}}})",
                    "{{mountpoint}}",
                ),
                unit="percent",
                minimum=0,
                maximum=100,
            ),
            timeseries(
                "Network received",
                q(
                    f"sum by (device) (rate(node_network_receive_bytes_total{{{NICS}}}[$__rate_interval]))",
                    "{{device}}",
                ),
                unit="Bps",
            ),
            timeseries(
                "Network sent",
                q(
                    f"sum by (device) (rate(node_network_transmit_bytes_total{{{NICS}}}[$__rate_interval]))",
                    "{{device}}",
                ),
                unit="Bps",
            ),
            timeseries(
                "Redis memory used",
                q("redis_memory_used_bytes", "{{role}} used"),
                q("redis_memory_max_bytes", "{{role}} max"),
                unit="bytes",
            ),
            timeseries(
                "Redis evictions and clients",
                q(
                    "sum by (role) (rate(redis_evicted_keys_total[$__rate_interval]))",
                    "{{role}} evicted/s",
                ),
                q("redis_connected_clients", "{{role}} clients"),
            ),
            timeseries(
                "Redis keyspace hit ratio",
                q(
                    _percent(
                        "sum by (role) (rate(redis_keyspace_hits_total[$__rate_interval]))",
                        "sum by (role) (rate(redis_keyspace_hits_total[$__rate_interval])) + sum by (role) (rate(redis_keyspace_misses_total[$__rate_interval]))",
                    ),
                    "{{role}}",
                ),
                unit="percent",
                minimum=0,
                maximum=100,
            ),
            table(
                "Scrape targets",
                q("up", "{{job}} {{instance}}"),
                unit="short",
                options={"showHeader": True},
            ),
        ],
    )


def api() -> Dashboard:
    """Seed dashboard 2: latency p50/p95/p99, error rate, RPS, and how offers were answered."""
    return Dashboard(
        "nextoffer-api",
        "nextoffer / API performance",
        "Latency percentiles, errors and throughput of the offers API (probes excluded).",
        [
            stat(
                "Requests per second",
                q(f"sum(rate(http_requests_total{{{REAL_ROUTES}}}[$__rate_interval]))"),
                unit="reqps",
            ),
            stat(
                "p95 latency",
                q(
                    f"histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{{{REAL_ROUTES}}}[$__rate_interval])))"
                ),
                unit="s",
                thresholds=[(None, "green"), (0.3, "red")],
            ),
            stat(
                "5xx error rate",
                q(
                    _percent(
                        f'sum(rate(http_requests_total{{{API}, status=~"5.."}}[$__rate_interval])) or vector(0)',
                        f"sum(rate(http_requests_total{{{API}}}[$__rate_interval]))",
                    )
                ),
                unit="percent",
                thresholds=[(None, "green"), (2, "red")],
            ),
            stat(
                "Offer cache hit ratio",
                q(
                    _percent(
                        'sum(rate(nextoffer_cache_requests_total{result="hit"}[$__rate_interval])) or vector(0)',
                        "sum(rate(nextoffer_cache_requests_total[$__rate_interval]))",
                    )
                ),
                unit="percent",
                thresholds=[(None, "red"), (80, "green")],
            ),
            timeseries(
                "Latency p50 / p95 / p99",
                *[
                    q(
                        f"histogram_quantile({p}, sum by (le) (rate(http_request_duration_seconds_bucket{{{REAL_ROUTES}}}[$__rate_interval])))",
                        f"p{int(p * 100)}",
                    )
                    for p in (0.5, 0.95, 0.99)
                ],
                unit="s",
                thresholds=[(None, "green"), (0.3, "red")],
            ),
            timeseries(
                "p95 latency by route",
                q(
                    f"histogram_quantile(0.95, sum by (le, route) (rate(http_request_duration_seconds_bucket{{{REAL_ROUTES}}}[$__rate_interval])))",
                    "{{route}}",
                ),
                unit="s",
            ),
            timeseries(
                "Requests per second by route",
                q(
                    f"sum by (route) (rate(http_requests_total{{{REAL_ROUTES}}}[$__rate_interval]))",
                    "{{route}}",
                ),
                unit="reqps",
            ),
            timeseries(
                "Responses by status",
                q(
                    f"sum by (status) (rate(http_requests_total{{{API}}}[$__rate_interval]))",
                    "{{status}}",
                ),
                unit="reqps",
            ),
            timeseries(
                "Error rate (5xx)",
                q(
                    _percent(
                        f'sum(rate(http_requests_total{{{API}, status=~"5.."}}[$__rate_interval])) or vector(0)',
                        f"sum(rate(http_requests_total{{{API}}}[$__rate_interval]))",
                    ),
                    "5xx",
                ),
                unit="percent",
                thresholds=[(None, "green"), (2, "red")],
            ),
            timeseries(
                "Offers answered from",
                q(
                    "sum by (source) (rate(nextoffer_offers_served_total[$__rate_interval]))",
                    "{{source}}",
                ),
                unit="reqps",
            ),
            timeseries(
                "Cache lookups",
                q(
                    "sum by (result) (rate(nextoffer_cache_requests_total[$__rate_interval]))",
                    "{{result}}",
                ),
                unit="reqps",
            ),
            timeseries(
                "Degraded answers and rate limiting",
                q(
                    "sum by (reason) (rate(nextoffer_degraded_answers_total[$__rate_interval])) or vector(0)",
                    "degraded: {{reason}}",
                ),
                q("sum(rate(nextoffer_rate_limited_total[$__rate_interval]))", "429 rate limited"),
                unit="reqps",
            ),
            logs(
                "API logs (errors and warnings)", '{service="api"} | json | level=~"error|warning"'
            ),
        ],
    )


def quality() -> Dashboard:
    """Seed dashboard 3: CTR, conversion, nDCG of the champion from its training run."""
    impressions = 'sum(increase(nextoffer_events_total{event_type="offer_impression"}[$__range]))'
    return Dashboard(
        "nextoffer-quality",
        "nextoffer / Recommendation quality",
        "Live CTR and conversion from offer events; held-out ranking quality of the champion.",
        [
            stat(
                "CTR (time range)",
                q(
                    _percent(
                        'sum(increase(nextoffer_events_total{event_type="offer_click"}[$__range])) or vector(0)',
                        impressions,
                    )
                ),
                unit="percent",
            ),
            stat(
                "Conversion (time range)",
                q(
                    _percent(
                        'sum(increase(nextoffer_events_total{event_type="offer_accept"}[$__range])) or vector(0)',
                        impressions,
                    )
                ),
                unit="percent",
            ),
            stat(
                "Champion nDCG@10",
                q('max(nextoffer_model_quality{model="offers", metric="ndcg_at_10"})'),
                unit="none",
            ),
            stat(
                "Offers champion version",
                q('max(nextoffer_model_champion_version{model="offers"})'),
                unit="none",
            ),
            timeseries(
                "Offer events per second",
                q(
                    "sum by (event_type) (rate(nextoffer_events_total[$__rate_interval]))",
                    "{{event_type}}",
                ),
                unit="short",
            ),
            timeseries(
                "CTR and conversion",
                q(
                    _percent(
                        'sum(rate(nextoffer_events_total{event_type="offer_click"}[$__rate_interval])) or vector(0)',
                        'sum(rate(nextoffer_events_total{event_type="offer_impression"}[$__rate_interval]))',
                    ),
                    "CTR",
                ),
                q(
                    _percent(
                        'sum(rate(nextoffer_events_total{event_type="offer_accept"}[$__rate_interval])) or vector(0)',
                        'sum(rate(nextoffer_events_total{event_type="offer_impression"}[$__rate_interval]))',
                    ),
                    "conversion",
                ),
                unit="percent",
            ),
            bars(
                "Champion ranking metrics (held-out)",
                q(
                    'max by (metric) (nextoffer_model_quality{model="offers", metric=~"ndcg_at_10|map_at_10|mrr_at_10|precision_at_10|recall_at_10|hit_rate_at_10|coverage_at_10"})',
                    "{{metric}}",
                ),
                unit="none",
                minimum=0,
                maximum=1,
            ),
            bars(
                "nDCG@10: champion against the recommenders it ranks",
                q(
                    'max by (metric) (nextoffer_model_quality{model="offers", metric=~"(.+_)?ndcg_at_10"})',
                    "{{metric}}",
                ),
                unit="none",
                minimum=0,
                maximum=1,
            ),
            timeseries(
                "Champion nDCG@10 over versions",
                q(
                    'max by (version) (nextoffer_model_quality{model="offers", metric="ndcg_at_10"})',
                    "v{{version}}",
                ),
                unit="none",
            ),
            timeseries(
                "Share of live and fallback answers",
                q(
                    _percent(
                        'sum(rate(nextoffer_offers_served_total{source!~"cache|precomputed"}[$__rate_interval])) or vector(0)',
                        "sum(rate(nextoffer_offers_served_total[$__rate_interval]))",
                    ),
                    "live or fallback",
                ),
                unit="percent",
            ),
        ],
    )


def ab_tests() -> Dashboard:
    """Seed dashboard 4: offer events, CTR and conversion per experiment and variant."""

    def by_variant(event: str, window: str = "$__range") -> str:
        return f'sum by (experiment, variant) (increase(nextoffer_events_total{{event_type="{event}", experiment!=""}}[{window}]))'

    return Dashboard(
        "nextoffer-ab",
        "nextoffer / A/B test results",
        "Variants of the running experiments side by side (the API's results endpoint has the significance test).",
        [
            table(
                "Variants (time range)",
                q(by_variant("offer_impression"), "impressions"),
                q(by_variant("offer_click"), "clicks"),
                q(by_variant("offer_accept"), "accepts"),
                options={"showHeader": True},
            ),
            bars(
                "CTR by variant",
                q(
                    _percent(by_variant("offer_click"), by_variant("offer_impression")),
                    "{{experiment}} {{variant}}",
                ),
                unit="percent",
            ),
            bars(
                "Conversion by variant",
                q(
                    _percent(by_variant("offer_accept"), by_variant("offer_impression")),
                    "{{experiment}} {{variant}}",
                ),
                unit="percent",
            ),
            bars(
                "Decline rate by variant",
                q(
                    _percent(
                        f"{by_variant('offer_decline')} or {by_variant('offer_impression')} * 0",
                        by_variant("offer_impression"),
                    ),
                    "{{experiment}} {{variant}}",
                ),
                unit="percent",
            ),
            timeseries(
                "Impressions per second by variant",
                q(
                    'sum by (experiment, variant) (rate(nextoffer_events_total{event_type="offer_impression", experiment!=""}[$__rate_interval]))',
                    "{{variant}}",
                ),
                unit="short",
            ),
            timeseries(
                "CTR by variant over time",
                q(
                    _percent(
                        by_variant("offer_click", "$__rate_interval"),
                        by_variant("offer_impression", "$__rate_interval"),
                    ),
                    "{{variant}}",
                ),
                unit="percent",
            ),
        ],
    )


def database() -> Dashboard:
    """Seed dashboard 5: connections, transactions, cache hits, size, locks, the app's pool."""
    db = 'datname="nextoffer"'
    return Dashboard(
        "nextoffer-database",
        "nextoffer / Database health",
        "PostgreSQL (postgres exporter) and the API's connection pool.",
        [
            stat(
                "PostgreSQL up",
                q("min(pg_up)"),
                unit="bool",
                thresholds=[(None, "red"), (1, "green")],
            ),
            stat(
                "Connections used",
                q(_percent("sum(pg_stat_activity_count)", "max(pg_settings_max_connections)")),
                unit="percent",
                thresholds=[(None, "green"), (80, "red")],
            ),
            stat("Database size", q(f"sum(pg_database_size_bytes{{{db}}})"), unit="bytes"),
            stat(
                "Buffer cache hit ratio",
                q(
                    _percent(
                        f"sum(rate(pg_stat_database_blks_hit{{{db}}}[$__rate_interval]))",
                        f"sum(rate(pg_stat_database_blks_hit{{{db}}}[$__rate_interval])) + sum(rate(pg_stat_database_blks_read{{{db}}}[$__rate_interval]))",
                    )
                ),
                unit="percent",
            ),
            timeseries(
                "Connections by state",
                q("sum by (state) (pg_stat_activity_count)", "{{state}}"),
                q("max(pg_settings_max_connections)", "max_connections"),
            ),
            timeseries(
                "Connections by database",
                q("sum by (datname) (pg_stat_activity_count)", "{{datname}}"),
            ),
            timeseries(
                "Transactions per second",
                q(f"sum(rate(pg_stat_database_xact_commit{{{db}}}[$__rate_interval]))", "commits"),
                q(
                    f"sum(rate(pg_stat_database_xact_rollback{{{db}}}[$__rate_interval]))",
                    "rollbacks",
                ),
            ),
            timeseries(
                "Rows per second",
                *[
                    q(f"sum(rate(pg_stat_database_tup_{kind}{{{db}}}[$__rate_interval]))", kind)
                    for kind in ("fetched", "inserted", "updated", "deleted")
                ],
            ),
            timeseries(
                "Longest open transaction",
                q("max by (state) (pg_stat_activity_max_tx_duration)", "{{state}}"),
                unit="s",
            ),
            timeseries("Locks by mode", q("sum by (mode) (pg_locks_count)", "{{mode}}")),
            timeseries(
                "Deadlocks and temp files",
                q(
                    f"sum(rate(pg_stat_database_deadlocks{{{db}}}[$__rate_interval]))",
                    "deadlocks/s",
                ),
                q(
                    f"sum(rate(pg_stat_database_temp_bytes{{{db}}}[$__rate_interval]))",
                    "temp bytes/s",
                ),
            ),
            timeseries(
                "API connection pool",
                q("sum by (state) (nextoffer_db_pool_connections)", "{{state}}"),
            ),
        ],
    )


def churn() -> Dashboard:
    """Churn risk of the customer base and the churn model's quality and drift."""
    return Dashboard(
        "nextoffer-churn",
        "nextoffer / Churn",
        "Customers by churn band in the latest scoring; the champion's held-out quality and drift.",
        [
            stat(
                "High-risk customers",
                q('max(nextoffer_churn_customers{band="high"})'),
                unit="short",
                thresholds=[(None, "orange")],
            ),
            stat(
                "High-risk share",
                q(
                    _percent(
                        'max(nextoffer_churn_customers{band="high"})',
                        "sum(max by (band) (nextoffer_churn_customers))",
                    )
                ),
                unit="percent",
            ),
            stat(
                "Churn ROC AUC (held-out)",
                q('max(nextoffer_model_quality{model="churn", metric="roc_auc"})'),
                unit="none",
                thresholds=[(None, "red"), (0.65, "green")],
            ),
            stat(
                "Drift flagged",
                q("max(nextoffer_model_drift_flag)"),
                unit="bool",
                thresholds=[(None, "green"), (1, "red")],
            ),
            timeseries(
                "Customers by churn band",
                q("max by (band) (nextoffer_churn_customers)", "{{band}}"),
            ),
            bars(
                "Churn model quality against its baseline",
                q(
                    'max by (metric) (nextoffer_model_quality{model="churn", metric=~"roc_auc|baseline_roc_auc|pr_auc|brier|baseline_brier|lift_top_decile"})',
                    "{{metric}}",
                ),
                unit="none",
            ),
            timeseries(
                "Largest feature drift (PSI)",
                q("max by (model) (nextoffer_model_max_psi)", "{{model}}"),
                unit="none",
                thresholds=[(None, "green"), (0.2, "red")],
            ),
            table(
                "Champions served",
                q(
                    "max by (offers_version, churn_version) (nextoffer_model_info)",
                    "offers {{offers_version}} · churn {{churn_version}}",
                ),
                q("max by (model) (nextoffer_model_champion_version)", "{{model}}"),
                options={"showHeader": True},
            ),
        ],
    )


def jobs() -> Dashboard:
    """Jobs and data freshness: when each job last succeeded, Celery's queues and tasks."""
    return Dashboard(
        "nextoffer-jobs",
        "nextoffer / Jobs and data freshness",
        "Age of each job's last success (ETL alert at 26 h, backups at 7 h), the workers' queues and tasks.",
        [
            bars(
                "Hours since last success",
                q(
                    "(time() - max by (job) (nextoffer_job_last_success_timestamp_seconds)) / 3600",
                    "{{job}}",
                ),
                unit="h",
                thresholds=[(None, "green"), (7, "orange"), (26, "red")],
            ),
            bars(
                "Last run succeeded",
                q("max by (job) (nextoffer_job_last_run_status)", "{{job}}"),
                unit="bool",
                thresholds=[(None, "red"), (1, "green")],
                minimum=0,
                maximum=1,
            ),
            timeseries(
                "Celery tasks per minute by state",
                q(
                    "sum by (state) (rate(nextoffer_celery_tasks_total[$__rate_interval])) * 60",
                    "{{state}}",
                ),
                unit="short",
            ),
            timeseries(
                "Celery task duration p95 by task",
                q(
                    "histogram_quantile(0.95, sum by (le, task) (rate(nextoffer_celery_task_duration_seconds_bucket[$__rate_interval])))",
                    "{{task}}",
                ),
                unit="s",
            ),
            timeseries(
                "Celery queue length",
                q("max by (queue) (nextoffer_celery_queue_length)", "{{queue}}"),
            ),
            timeseries(
                "Celery tasks running",
                q("sum(nextoffer_celery_active_tasks)", "running"),
                q('count(up{job="nextoffer-worker"} == 1)', "workers up"),
            ),
            timeseries(
                "Event spool",
                q("sum(nextoffer_event_spool_depth)", "waiting"),
                q("sum(increase(nextoffer_events_spooled_total[$__rate_interval]))", "spooled"),
            ),
            logs("Worker and beat logs", '{service=~"worker|beat"} | json'),
        ],
    )


DASHBOARDS = (system, api, quality, ab_tests, database, churn, jobs)


def render() -> dict[str, str]:
    """File name → JSON text of every dashboard."""
    files = {}
    for build in DASHBOARDS:
        board = build()
        files[f"{board.uid.removeprefix('nextoffer-')}.json"] = (
            json.dumps(board.to_json(), indent=2, sort_keys=True) + "\n"
        )
    return files


def main(argv: list[str] | None = None) -> int:
    """Write the dashboards, or with --check report those that differ (exit 1)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--out", type=Path, default=OUT, help="folder of the JSON files")
    args = parser.parse_args(argv)
    files = render()
    if args.check:
        stale = sorted(
            name
            for name, text in files.items()
            if not (args.out / name).is_file() or (args.out / name).read_text() != text
        )
        extra = sorted({p.name for p in args.out.glob("*.json")} - set(files))
        for name in stale:
            print(f"{args.out / name}: differs from generate.py; run `make dashboards`")
        for name in extra:
            print(f"{args.out / name}: not made by generate.py")
        return 1 if stale or extra else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.out / name).write_text(text)
    print(f"wrote {len(files)} dashboards to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
