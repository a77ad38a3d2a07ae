"""Holdings without purchases: training learns from a snapshot, registers, and serves offers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from nextoffer.asgi import create_app
from nextoffer.cache.memory import MemoryCache
from nextoffer.cli import app
from nextoffer.config import Settings
from nextoffer.domain.roles import Role
from nextoffer.jobs.calls import run_training
from nextoffer.pipelines.etl import run_ingest
from nextoffer.pipelines.features import run_features
from nextoffer.registry.mlflow_registry import ModelRegistry
from nextoffer.registry.protocol import TAG_CHAMPION_RESCORED
from nextoffer.scoring.champions import load_offer_champion
from nextoffer.serving.api_keys import create_api_key
from nextoffer.store import Engine, migrate
from nextoffer.store.engine import make_engine
from nextoffer.synth.generator import generate_world


def _operator_world(tmp_path: Path, files: tuple[str, ...]) -> Path:
    """The generator's world as an operator without sales history would export it."""
    world = tmp_path / "world"
    generate_world(world, 1000, seed=11)
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


def _loaded_for_the_cli(
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    files: tuple[str, ...],
) -> tuple[Path, Settings, Engine]:
    """The export loaded and featured, and the CLI's environment pointing at it."""
    export = _operator_world(tmp_path, files)
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
        "NEXTOFFER_TRAIN_THREADS": "1",
    }.items():
        monkeypatch.setenv(name, value)
    return export, settings, engine


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

    # The next run re-scores that champion on its own test rows, in the same run, and
    # compares like with like: same customers, and on unchanged data the same value.
    second = run_training(engine, settings, registry, kinds=["offers"])
    decision = second.decisions["offers"]
    assert "on the same test data" in decision.reason
    version = next(v for v in registry.versions("offers") if v.version == decision.version)
    rescored = json.loads(version.tags[TAG_CHAMPION_RESCORED])
    assert second.offers is not None
    assert rescored["users"] == second.offers.table["ranker"]["users"]
    assert decision.champion_value == pytest.approx(rescored[decision.primary_metric])
    assert not decision.promoted  # the same data and recipe: not better than itself


def test_nothing_to_learn_from_is_one_line_and_exit_1(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _loaded_for_the_cli(tmp_path, database_url, monkeypatch, ("products", "customers"))

    done = CliRunner().invoke(app, ["train", "--models", "offers"])

    assert done.exit_code == 1
    lines = [line for line in done.output.splitlines() if line.strip()]
    assert len(lines) == 1, done.output
    assert "nothing to learn from" in lines[0]
    assert "Traceback" not in done.output


def test_a_degenerate_challenger_never_serves_and_a_stale_champion_is_flagged(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export, settings, engine = _loaded_for_the_cli(
        tmp_path, database_url, monkeypatch, ("products", "customers", "subscriptions")
    )
    cli = CliRunner()
    # A ranker that cannot learn (a vanishing learning rate): every candidate ties, so it
    # ranks no better than popularity on the same hidden products.
    crippled = tmp_path / "crippled.json"
    crippled.write_text('{"offers": {"ranker": {"learning_rate": 1e-9, "rounds": 1}}}')

    first = cli.invoke(app, ["train", "--models", "offers", "--params", str(crippled)])

    assert first.exit_code == 0, first.output
    assert "degenerate" in first.output
    registry = ModelRegistry.from_settings(settings)
    assert registry.champion("offers") is None  # not even the first version serves
    assert [v.version for v in registry.versions("offers")] == [1]

    second = cli.invoke(app, ["train", "--models", "offers"])

    assert second.exit_code == 0, second.output
    champion = registry.champion("offers")
    assert champion is not None and champion.version == 2

    def champion_mismatches() -> list[str]:
        listed = cli.invoke(app, ["models", "list", "offers", "--json"])
        assert listed.exit_code == 0, listed.output
        versions = json.loads(listed.stdout)["offers"]
        return next(v["data_mismatches"] for v in versions if v["champion"])

    assert champion_mismatches() == []
    # The catalogue changes under the champion: one more product on sale.
    products = pd.read_csv(export / "products.csv", dtype=str, keep_default_na=False)
    extra = products.iloc[[0]].assign(product_id="NEW-PLAN", name="New plan")
    newer = tmp_path / "newer"
    newer.mkdir()
    extra.to_csv(newer / "products.csv", index=False)
    run_ingest(engine, settings, newer)

    stale = champion_mismatches()
    assert len(stale) == 1 and stale[0].startswith("catalogue changed"), stale
    listed = cli.invoke(app, ["models", "list", "offers"])
    assert "no longer matches" in listed.output
    # The API says the same, per version.
    _record, key = create_api_key(engine, "stale test", Role.OPERATOR)
    with TestClient(create_app(settings, engine=engine, cache=MemoryCache())) as client:
        answer = client.get("/v1/models", headers={"X-API-Key": key})
    assert answer.status_code == 200, answer.text
    by_version = {v["version"]: v for v in answer.json()["versions"] if v["kind"] == "offers"}
    assert by_version[2]["data_mismatches"] == stale
    engine.dispose()
