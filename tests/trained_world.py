"""A small generated world, loaded into SQLite and trained by the real pipelines, for model tests."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from nextoffer.config import Settings
from nextoffer.pipelines.etl import run_ingest
from nextoffer.pipelines.features import run_features
from nextoffer.pipelines.train import TrainOverrides, run_training
from nextoffer.registry.mlflow_registry import ModelRegistry
from nextoffer.store import migrate
from nextoffer.store.engine import make_engine
from nextoffer.synth.generator import generate_world


def trained_world(
    root: Path, customers: int, overrides: TrainOverrides, *, seed: int = 11
) -> tuple[Settings, Engine, ModelRegistry]:
    """Generate, migrate, ingest, compute features and train (no churn scoring) under `root`."""
    generate_world(root / "data", customers, seed=seed)
    settings = Settings(
        database_url=f"sqlite:///{root / 'nextoffer.db'}",
        var_dir=root / "var",
        registry_uri=f"sqlite:///{root / 'mlflow.db'}",
        artifacts_url=f"file://{root / 'artifacts'}",
        train_threads=1,
    )
    engine = make_engine(settings.database_url)
    migrate.upgrade(engine)
    run_ingest(engine, settings, root / "data")
    run_features(engine, settings)
    registry = ModelRegistry.from_settings(settings)
    run_training(engine, settings, registry, overrides=overrides, score=False)
    return settings, engine, registry
