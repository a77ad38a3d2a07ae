"""One generated world, loaded and trained once for every model-quality test.

The world has planted structure (docs/synthetic-data.md): latent segments with their own
product affinities, complements, and a known churn model whose probabilities are in
`truth/`. Training goes through the same job as `nextoffer train`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine

from nextoffer.config import Settings
from nextoffer.pipelines.etl import run_ingest
from nextoffer.pipelines.features import run_features
from nextoffer.pipelines.train import TrainResult, run_training
from nextoffer.registry.mlflow_registry import ModelRegistry
from nextoffer.store import migrate
from nextoffer.store.engine import make_engine
from nextoffer.synth.generator import generate_world

CUSTOMERS = 15_000
SEED = 42


@dataclass
class TrainedWorld:
    """A loaded world, its settings, the registry, and the first training's result."""

    data: Path
    settings: Settings
    engine: Engine
    registry: ModelRegistry
    first: TrainResult
    env: dict[str, str]


@pytest.fixture(scope="session")
def trained_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrainedWorld]:
    root = tmp_path_factory.mktemp("model-world")
    data = root / "data"
    generate_world(data, CUSTOMERS, SEED)
    env = {
        "NEXTOFFER_DATABASE_URL": f"sqlite:///{root / 'nextoffer.db'}",
        "NEXTOFFER_VAR_DIR": str(root / "var"),
        "NEXTOFFER_REGISTRY_URI": f"sqlite:///{root / 'mlflow.db'}",
        "NEXTOFFER_ARTIFACTS_URL": f"file://{root / 'artifacts'}",
        "NEXTOFFER_TRAIN_THREADS": "2",
        "NEXTOFFER_LOG_JSON": "false",
    }
    settings = Settings(
        database_url=env["NEXTOFFER_DATABASE_URL"],
        var_dir=Path(env["NEXTOFFER_VAR_DIR"]),
        registry_uri=env["NEXTOFFER_REGISTRY_URI"],
        artifacts_url=env["NEXTOFFER_ARTIFACTS_URL"],
        train_threads=2,
    )
    engine = make_engine(settings.database_url)
    migrate.upgrade(engine)
    run_ingest(engine, settings, data)
    run_features(engine, settings)
    registry = ModelRegistry.from_settings(settings)
    first = run_training(engine, settings, registry)
    yield TrainedWorld(data, settings, engine, registry, first, env)
    engine.dispose()
