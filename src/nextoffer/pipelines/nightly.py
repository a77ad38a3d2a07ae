"""The nightly ETL: new files from the ingest source → load → features → offers precompute.

Each step is a function of its own, so that Airflow runs them as separate tasks
(`dags/daily_etl.py`) and Celery beat or the CLI runs them in one go (`nightly_steps`, the
`etl` job of nextoffer.jobs). Nothing here records a job run: the job that runs a step does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nextoffer.config import Settings
from nextoffer.domain.errors import ConfigError
from nextoffer.pipelines.etl import IngestResult, Staged, load_staged, read_mapping, stage_source
from nextoffer.store import Engine

# Features, precompute and the registry are imported where they are used: scikit-learn,
# the models and MLflow take seconds to import, and under Airflow every step is a process
# of its own that needs only some of them.
if TYPE_CHECKING:
    from nextoffer.pipelines.features import FeaturesResult
    from nextoffer.pipelines.precompute import PrecomputeResult
    from nextoffer.registry.mlflow_registry import ModelRegistry


def ingest_source(settings: Settings, source: str | None = None) -> str:
    """The source to read: the one given, else NEXTOFFER_INGEST_SOURCE."""
    chosen = source or settings.ingest_source
    if not chosen:
        raise ConfigError(
            "NEXTOFFER_INGEST_SOURCE is empty: set it to the folder or s3://bucket/prefix "
            "that new import files arrive in"
        )
    return chosen


def extract(engine: Engine, settings: Settings, source: str | None = None) -> Staged:
    """Step 1: the source's files that are not in the ledger, downloaded if remote.

    Read through NEXTOFFER_INGEST_MAPPING when it is set (an operator's own export format).
    """
    return stage_source(
        engine,
        settings,
        ingest_source(settings, source),
        new_only=True,
        mapping=read_mapping(settings.ingest_mapping),
    )


def load(
    engine: Engine, settings: Settings, staged: Staged, run_id: str | None = None
) -> IngestResult:
    """Step 2: validate and upsert the staged files (bad rows to quarantine), ledger them."""
    return load_staged(engine, settings, staged, run_id=run_id)


def recalculate_features(
    engine: Engine, settings: Settings, run_id: str | None = None
) -> FeaturesResult:
    """Step 3: every customer's features and segment, from the data now stored."""
    from nextoffer.pipelines.features import run_features

    return run_features(engine, settings, run_id=run_id)


def update_cache(
    engine: Engine, settings: Settings, registry: ModelRegistry
) -> PrecomputeResult | None:
    """Step 4: every customer's offers with the champion; None when there is no champion yet.

    Cached answers need no purge: their keys carry a stamp of the last features run and the
    champion versions, so the new features make the API read fresh ones (cache/keys.py).
    """
    from nextoffer.pipelines.precompute import run_precompute, uplift_for_ranking
    from nextoffer.scoring.champions import load_offer_champion

    if registry.champion("offers") is None:
        return None
    return run_precompute(
        engine,
        settings,
        load_offer_champion(registry),
        uplift=uplift_for_ranking(registry, settings),
    )


@dataclass
class NightlyResult:
    """What one nightly ETL did; `features` and `precompute` are None when nothing was new."""

    source: str
    skipped: int
    ingest: IngestResult | None = None
    features: FeaturesResult | None = None
    precompute: PrecomputeResult | None = None
    cache_step: bool = True
    seconds: float = 0.0

    @property
    def files_loaded(self) -> int:
        """New or changed files loaded by this run."""
        return 0 if self.ingest is None else len(self.ingest.files)

    def counts(self) -> dict[str, Any]:
        """The run's counts, as recorded in `job_runs`."""
        ingest = self.ingest
        return {
            "files_loaded": self.files_loaded,
            "files_skipped": self.skipped,
            "rows_read": 0 if ingest is None else ingest.rows_read,
            "rows_loaded": 0 if ingest is None else ingest.rows_loaded,
            "rows_changed": 0 if ingest is None else ingest.rows_changed,
            "rows_quarantined": 0 if ingest is None else ingest.rows_quarantined,
            "rows_erased": 0 if ingest is None else ingest.rows_erased,
            "customers_featured": 0 if self.features is None else self.features.customers,
            "customers_precomputed": 0 if self.precompute is None else self.precompute.customers,
        }

    def summary(self) -> str:
        """The one-line summary printed at the end of a run."""
        if not self.files_loaded:
            return (
                f"etl: nothing new in {self.source} ({self.skipped:,} files already loaded) "
                f"· {self.seconds:.1f} s"
            )
        c = self.counts()
        parts = [
            f"etl: {c['files_loaded']:,} new files from {self.source}",
            f"{c['rows_loaded']:,} rows loaded ({c['rows_changed']:,} new or changed)",
            f"{c['rows_quarantined']:,} quarantined",
            *([f"{c['rows_erased']:,} of erased customers dropped"] if c["rows_erased"] else []),
            f"features for {c['customers_featured']:,} customers",
        ]
        if self.precompute is not None:
            parts.append(f"offers {self.precompute.model_version} precomputed")
        elif self.cache_step:
            parts.append("no offers champion yet: precompute skipped")
        return " · ".join([*parts, f"{self.seconds:.1f} s"])


def nightly_steps(
    engine: Engine,
    settings: Settings,
    registry: ModelRegistry,
    source: str | None = None,
    *,
    cache: bool = True,
    run_id: str | None = None,
) -> NightlyResult:
    """The four steps in one process; with nothing new, features and precompute are skipped.

    The load step runs even then, so that a quiet night's counts show the files left out.
    `cache=False` leaves out step 4, for callers that run precompute as a job of its
    own (Celery beat's chain). `run_id`: the `etl` job run the loaded files belong to.
    """
    started = time.perf_counter()
    staged = extract(engine, settings, source)
    result = NightlyResult(source=staged.source, skipped=len(staged.skipped), cache_step=cache)
    result.ingest = load(engine, settings, staged, run_id)
    if result.ingest.files:
        result.features = recalculate_features(engine, settings, run_id)
        if cache:
            result.precompute = update_cache(engine, settings, registry)
    result.seconds = time.perf_counter() - started
    return result
