"""Holdings without purchases: training learns from a snapshot, registers, and serves offers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nextoffer.cli import app
from nextoffer.config import Settings
from nextoffer.jobs.calls import run_training
from nextoffer.pipelines.etl import run_ingest
from nextoffer.pipelines.features import run_features
from nextoffer.registry.mlflow_registry import ModelRegistry
from nextoffer.scoring.champions import load_offer_champion
from nextoffer.store import migrate
from nextoffer.store.engine import make_engine
from nextoffer.synth.generator import generate_world


def _operator_world(tmp_path: Path, files: tuple[str, ...]) -> Path:
    """The generator's world as an operator without sales history would export it."""
    world = tmp_path / "world"
    generate_world(world, 1500, seed=11)
    export = tmp_path / "export"
    export.mkdir()
    for name in files:
        shutil.copy(world / f"{name}.csv", export / f"{name}.csv")
    return export


def _settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        var_dir=tmp_path / "var",
        registry_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifacts_url=f"file://{tmp_path / 'artifacts'}",
        train_threads=1,
    )


def test_holdings_only_data_trains_in_snapshot_mode_and_scores(
    database_url: str, tmp_path: Path
) -> None:
    export = _operator_world(tmp_path, ("products", "customers", "subscriptions"))
    settings = _settings(tmp_path, database_url)
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    run_ingest(engine, settings, export)
    run_features(engine, settings)
    registry = ModelRegistry.from_settings(settings)

    result = run_training(engine, settings, registry, kinds=["offers"])

    offers = result.offers
    assert offers is not None and offers.source == "snapshot"
    assert "learned from the holdings" in offers.learned_from
    ranker = offers.table["ranker"]
    assert ranker["users"] > 100
    # Better than guessing by popularity on the same hidden products, and promoted.
    assert ranker["hit_rate_at_1"] > offers.table["popularity"]["hit_rate_at_1"]
    assert result.decisions["offers"].promoted
    # The champion's recorded metrics are the ones measured on the test group.
    champion = load_offer_champion(registry)
    assert champion.model.meta["labels"] == "snapshot"
    # Re-scoring the champion on this run's test group gives its own test metrics back.
    again = offers.score(champion.model)
    assert again["hit_rate_at_1"] == pytest.approx(ranker["hit_rate_at_1"])


def test_nothing_to_learn_from_is_one_line_and_exit_1(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export = _operator_world(tmp_path, ("products", "customers"))
    settings = _settings(tmp_path, database_url)
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    run_ingest(engine, settings, export)
    run_features(engine, settings)
    for name, value in {
        "NEXTOFFER_DATABASE_URL": database_url,
        "NEXTOFFER_VAR_DIR": str(tmp_path / "var"),
        "NEXTOFFER_REGISTRY_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "NEXTOFFER_ARTIFACTS_URL": f"file://{tmp_path / 'artifacts'}",
    }.items():
        monkeypatch.setenv(name, value)

    done = CliRunner().invoke(app, ["train", "--models", "offers"])

    assert done.exit_code == 1
    lines = [line for line in done.output.splitlines() if line.strip()]
    assert len(lines) == 1, done.output
    assert "nothing to learn from" in lines[0]
    assert "Traceback" not in done.output
