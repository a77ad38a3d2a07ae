"""Prometheus gauges for the champion models' quality, read from the registry and cached."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from nextoffer.registry.protocol import MODEL_KINDS, ModelVersionInfo

log = logging.getLogger(__name__)

_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]")


def metric_label(name: str) -> str:
    """A metric name as a label value: `ndcg@10` → `ndcg_at_10`, other odd characters → `_`."""
    return _NOT_ALNUM.sub("_", name.replace("@", "_at_"))


class ChampionSource(Protocol):
    """Where the gauges read champions: the registry, or serving's table of them."""

    def champion(self, kind: str) -> ModelVersionInfo | None:
        """The champion of `kind`, or None."""
        ...


class ModelQualityCollector(Collector):
    """Yields the champions' metrics on each scrape, reading MLflow at most every `cache_seconds`.

    Register with `CollectorRegistry.register(ModelQualityCollector(registry))`. A registry
    that cannot be read does not fail the scrape: it yields `nextoffer_model_registry_up 0`
    and nothing else, and the failure is cached too, so a down MLflow server does not make
    every scrape wait for its timeouts.
    """

    def __init__(self, registry: ChampionSource, cache_seconds: float = 60) -> None:
        self._registry = registry
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._families: list[Metric] = []
        self._read_at: float | None = None

    def describe(self) -> Iterable[Metric]:
        """The families this collector yields, without reading the registry."""
        return _empty_families()

    def collect(self) -> Iterable[Metric]:
        """The cached families, refreshed from the registry when older than `cache_seconds`."""
        with self._lock:
            now = time.monotonic()
            if self._read_at is None or now - self._read_at >= self._cache_seconds:
                self._families = self._read()
                self._read_at = now
            return list(self._families)

    def _read(self) -> list[Metric]:
        quality, version, drift, psi, up = _empty_families()
        try:
            for kind in MODEL_KINDS:
                champion = self._registry.champion(kind)
                if champion is None:
                    continue
                number = str(champion.version)
                seen: set[str] = set()
                for name, value in sorted(champion.metrics.items()):
                    label = metric_label(name)
                    # Two names that clean to the same label would be a duplicate series.
                    if label in seen:
                        continue
                    seen.add(label)
                    quality.add_metric([kind, number, label], value)
                version.add_metric([kind], champion.version)
                flag = champion.metrics.get("drift_flag", 0.0)
                drift.add_metric([kind], 1.0 if flag >= 1 else 0.0)
                if "max_psi" in champion.metrics:
                    psi.add_metric([kind], champion.metrics["max_psi"])
        except Exception as exc:
            # A scrape must never fail because MLflow is down or misconfigured.
            log.warning("model quality gauges: cannot read the model registry: %s", exc)
            up.add_metric([], 0.0)
            return [up]
        up.add_metric([], 1.0)
        return [quality, version, drift, psi, up]


def _empty_families() -> tuple[
    GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily
]:
    return (
        GaugeMetricFamily(
            "nextoffer_model_quality",
            "Evaluation metrics of each model's champion version",
            labels=["model", "version", "metric"],
        ),
        GaugeMetricFamily(
            "nextoffer_model_champion_version",
            "Version number the champion alias points at",
            labels=["model"],
        ),
        GaugeMetricFamily(
            "nextoffer_model_drift_flag",
            "1 when the champion's drift_flag metric is at least 1, else 0",
            labels=["model"],
        ),
        GaugeMetricFamily(
            "nextoffer_model_max_psi",
            "Largest population stability index over the champion's features",
            labels=["model"],
        ),
        GaugeMetricFamily(
            "nextoffer_model_registry_up",
            "1 when the last read of the model registry succeeded, else 0",
            labels=[],
        ),
    )
