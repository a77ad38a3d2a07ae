"""The jobs an operator can start by name (API, CLI, Celery): ETL, training, precompute."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from nextoffer.config import Settings
from nextoffer.domain.errors import ConfigError
from nextoffer.pipelines.champions import load_offer_champion
from nextoffer.pipelines.etl import run_ingest
from nextoffer.pipelines.features import run_features
from nextoffer.pipelines.nightly import nightly_steps
from nextoffer.pipelines.precompute import ChunkRunner, run_precompute
from nextoffer.pipelines.train import KINDS, run_training
from nextoffer.registry.mlflow_registry import ModelRegistry
from nextoffer.store.runs import recorded_run

JOB_KINDS = ("etl", "training", "precompute")


@dataclass(frozen=True)
class JobContext:
    """What every job needs: the store, the settings and the model registry.

    `fan_out(model_version)` gives precompute a way to run its chunks elsewhere (Celery
    tasks scoring with that offers version); None runs them here, one after the other.
    """

    engine: Engine
    settings: Settings
    registry: ModelRegistry
    fan_out: Callable[[int], ChunkRunner] | None = None


Runner = Callable[[JobContext, dict[str, Any]], dict[str, Any]]
"""A job: its context and parameters in, its counts (recorded with the run) out."""


def run_job(
    context: JobContext,
    kind: str,
    params: Mapping[str, Any],
    run_id: str | None = None,
    after: Callable[[str], None] | None = None,
    recorded: Callable[[], None] | None = None,
    runners: Mapping[str, Runner] | None = None,
) -> dict[str, Any]:
    """Run one job, recorded in `job_runs` under `run_id`; returns its counts.

    `recorded()` is called once the run's row exists (a caller may then hand out the id);
    `after(kind)` once the job succeeded (the API uses it to refresh its state). `runners`
    is the catalogue to look `kind` up in (nextoffer.ops.jobs adds operations' jobs).
    """
    catalogue = PIPELINE_JOBS if runners is None else runners
    if kind not in catalogue:
        raise ConfigError(f"unknown job {kind!r}; jobs: {', '.join(catalogue)}")
    with recorded_run(context.engine, kind, run_id) as run:
        if recorded is not None:
            recorded()
        run.counts = catalogue[kind](context, dict(params))
    if after is not None:
        after(kind)
    return run.counts


def _etl(context: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    path = params.get("path")
    if not path:
        if not context.settings.ingest_source:
            raise ConfigError(
                "an etl job needs params.path (the folder or file to ingest) or "
                "NEXTOFFER_INGEST_SOURCE (where the nightly ETL finds new files)"
            )
        # The scheduled run: only the source's new files, then features. Precompute and the
        # cache refill follow as jobs of their own in the schedule's chain.
        steps = nightly_steps(context.engine, context.settings, context.registry, cache=False)
        return steps.counts()
    ingested = run_ingest(context.engine, context.settings, str(path))
    features = run_features(context.engine, context.settings)
    return {
        "rows_read": ingested.rows_read,
        "rows_loaded": ingested.rows_loaded,
        "rows_quarantined": ingested.rows_quarantined,
        "customers_featured": features.customers,
    }


def _training(context: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    kinds = params.get("models") or list(KINDS)
    if isinstance(kinds, str):
        kinds = [k.strip() for k in kinds.split(",") if k.strip()]
    result = run_training(context.engine, context.settings, context.registry, kinds=kinds)
    return {
        **{f"{kind}_version": d.version for kind, d in result.decisions.items()},
        **{f"{kind}_promoted": d.promoted for kind, d in result.decisions.items()},
    }


def _precompute(context: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    champion = load_offer_champion(context.registry)
    run_chunks = None if context.fan_out is None else context.fan_out(champion.version)
    result = run_precompute(context.engine, context.settings, champion, run_chunks=run_chunks)
    return {
        "customers": result.customers,
        "with_offers": result.with_offers,
        "chunks": result.chunks,
        "model_version": result.model_version,
        # The instant every row of this run carries (`precomputed_offers.computed_at`).
        "computed_at": None if result.computed_at is None else result.computed_at.isoformat(),
    }


PIPELINE_JOBS: dict[str, Runner] = {
    "etl": _etl,
    "training": _training,
    "precompute": _precompute,
}
