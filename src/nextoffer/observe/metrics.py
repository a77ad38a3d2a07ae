"""Prometheus metrics of the API: names the dashboards and alert rules of deploy/ rely on."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0)


class ApiMetrics:
    """Every metric the API exports, on one registry (a fresh one per app, for tests).

    With several worker processes (`PROMETHEUS_MULTIPROC_DIR` set), counters and histograms
    are written to files and `/metrics` merges them; live gauges (pool, spool, bands) are
    collected by the process that answers the scrape.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._live_collectors: list[Collector] = []
        r = self.registry

        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(name, doc, labels, registry=r)

        self.http_requests = counter(
            "http_requests_total",
            "HTTP requests by method, route template and status code.",
            "method",
            "route",
            "status",
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request duration by method and route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.offers_served = counter(
            "nextoffer_offers_served_total",
            "Offer answers by where they came from (cache, precomputed, live, fallback...).",
            "source",
        )
        self.cache_requests = counter(
            "nextoffer_cache_requests_total",
            "Offer cache lookups by result: hit, miss or error (cache unreachable).",
            "result",
        )
        self.events = counter(
            "nextoffer_events_total",
            "Offer events received, by type, experiment and variant (for CTR and conversion).",
            "event_type",
            "experiment",
            "variant",
        )
        self.events_spooled = counter(
            "nextoffer_events_spooled_total",
            "Events written to the local spool because the database was unreachable.",
        )
        self.degraded_answers = counter(
            "nextoffer_degraded_answers_total",
            "Answers given while a backend was unavailable, by the reason noted.",
            "reason",
        )
        self.rate_limited = counter("nextoffer_rate_limited_total", "Requests refused with 429.")
        # Exposures (serving/exposures.py): written in batches off the request path.
        self.exposures_recorded = counter(
            "nextoffer_exposures_recorded_total",
            "Exposures newly written to the database, by arm (treated, control) and source.",
            "arm",
            "source",
        )
        self.exposures_spooled = counter(
            "nextoffer_exposures_spooled_total",
            "Exposures written to the local spool because the database was unreachable.",
        )

    def scrape_registry(self) -> CollectorRegistry:
        """What `/metrics` renders: this registry, or the merged multiprocess view."""
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not directory:
            return self.registry
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=directory)  # type: ignore[no-untyped-call]
        for collector in self._live_collectors:
            merged.register(collector)
        return merged

    def add_live_collector(self, collector: Collector) -> None:
        """A collector of live state (gauges), also exported in multiprocess mode."""
        self._live_collectors.append(collector)
        self.registry.register(collector)


class GaugeCollector(Collector):
    """Gauges read from callables at scrape time; a failing reader is skipped, not fatal."""

    def __init__(
        self,
        readers: Iterable[tuple[str, str, list[str], Callable[[], dict[tuple[str, ...], float]]]],
    ) -> None:
        self.readers = list(readers)

    def describe(self) -> Iterable[GaugeMetricFamily]:
        """No fixed description: the values are read when scraped."""
        return []

    def collect(self) -> Iterable[GaugeMetricFamily]:
        """One gauge family per reader."""
        for name, doc, labels, read in self.readers:
            family = GaugeMetricFamily(name, doc, labels=labels)
            try:
                values = read()
            except Exception:  # noqa: S112 - a dead backend must not break /metrics
                continue
            for label_values, value in values.items():
                family.add_metric(list(label_values), value)
            yield family


def gauge(value: float) -> dict[tuple[str, ...], float]:
    """A reader result for an unlabelled gauge."""
    return {(): float(value)}
