"""Prometheus gauges of the latest impact run (treated vs control), read and cached."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from nextoffer.domain.impact import ARMS, Difference, ImpactReport

log = logging.getLogger(__name__)

PREFIX = "nextoffer_impact_"
DIFFERENCES = (
    (
        "incremental_acquisition_rate",
        "acquisition",
        "Acquisition rate of treated minus control customers (0.01 = one point)",
    ),
    (
        "incremental_margin_per_customer",
        "margin",
        "Margin per exposed customer, net of offer cost: treated minus control",
    ),
    (
        "churn_rate_difference",
        "churn",
        "Churn rate of treated minus control customers (negative: fewer left)",
    ),
)
"""(gauge name, report attribute, help) of each difference; each has _ci_low and _ci_high."""


class ImpactCollector(Collector):
    """The latest stored impact run as gauges, read at most every `cache_seconds`.

    `read` returns the latest report (None before the first run). Nothing is yielded for a
    difference without an estimate (too few customers in an arm), so a dashboard shows a
    gap rather than a zero; a failed read yields nothing and is retried after the cache time.
    """

    def __init__(self, read: Callable[[], ImpactReport | None], cache_seconds: float = 60) -> None:
        self._read_report = read
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._families: list[Metric] = []
        self._read_at: float | None = None

    def describe(self) -> Iterable[Metric]:
        """No fixed description: the values are read when scraped."""
        return []

    def collect(self) -> Iterable[Metric]:
        """The cached families, refreshed when older than `cache_seconds`."""
        with self._lock:
            now = time.monotonic()
            if self._read_at is None or now - self._read_at >= self._cache_seconds:
                self._families = self._read()
                self._read_at = now
            return list(self._families)

    def _read(self) -> list[Metric]:
        try:
            report = self._read_report()
        except Exception as exc:
            # A scrape must never fail because the database is away.
            log.warning("impact gauges: cannot read the latest impact run: %s", exc)
            return []
        return [] if report is None else impact_families(report)


def impact_families(report: ImpactReport) -> list[Metric]:
    """The gauge families of one report's overall comparison."""
    overall = report.overall
    exposed = GaugeMetricFamily(
        PREFIX + "exposed_customers",
        "Customers compared by the latest impact run, by arm",
        labels=["arm"],
    )
    for arm in ARMS:
        exposed.add_metric([arm], float(getattr(overall, arm).customers))
    families: list[Metric] = [exposed]
    for name, attribute, help_text in DIFFERENCES:
        difference: Difference = getattr(overall, attribute)
        for suffix, value, what in (
            ("", difference.estimate, help_text),
            ("_ci_low", difference.ci_low, f"Lower bound of the 95 % interval: {help_text}"),
            ("_ci_high", difference.ci_high, f"Upper bound of the 95 % interval: {help_text}"),
        ):
            if value is None:
                continue
            family = GaugeMetricFamily(PREFIX + name + suffix, what)
            family.add_metric([], value)
            families.append(family)
    computed = GaugeMetricFamily(
        PREFIX + "computed_timestamp_seconds", "When the latest impact run was computed"
    )
    computed.add_metric([], datetime.fromisoformat(report.computed_at).timestamp())
    families.append(computed)
    return families
