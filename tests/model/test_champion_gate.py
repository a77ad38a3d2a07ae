"""A worse challenger trained through `nextoffer train` never becomes champion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import func, select
from typer.testing import CliRunner

from nextoffer.cli import app
from nextoffer.registry.gauges import ModelQualityCollector
from nextoffer.store.schema import ChurnScore
from tests.model.conftest import TrainedWorld

# Real models, deliberately crippled: one shallow tree each, recommenders pinned (no search).
WEAK = {
    "offers": {
        "recommenders": {
            "popularity": {},
            "segment_popularity": {},
            "item_knn": {"neighbours": 5},
            "ease": {"regularization": 50.0},
            "als": {"factors": 8, "iterations": 2},
        },
        "ranker": {"num_leaves": 2, "rounds": 1},
    },
    "churn": {"num_leaves": 2, "num_boost_round": 1, "early_stopping_rounds": 1},
}


@pytest.fixture
def cli_env(trained_world: TrainedWorld, monkeypatch: pytest.MonkeyPatch) -> TrainedWorld:
    for name, value in trained_world.env.items():
        monkeypatch.setenv(name, value)
    return trained_world


def test_worse_challenger_does_not_move_the_champion(cli_env: TrainedWorld, tmp_path: Path) -> None:
    registry = cli_env.registry
    before = {kind: registry.champion(kind) for kind in ("offers", "churn")}
    assert before["offers"] is not None and before["churn"] is not None
    params = tmp_path / "weak.json"
    params.write_text(json.dumps(WEAK))

    result = CliRunner().invoke(app, ["train", "--params", str(params)])

    assert result.exit_code == 0, result.output
    assert "champion unchanged" in result.output
    for kind in ("offers", "churn"):
        champion = registry.champion(kind)
        assert champion is not None and champion.version == before[kind].version  # type: ignore[union-attr]
        newest = registry.versions(kind)[0]
        assert newest.version > champion.version
        assert newest.tags["nextoffer.decision"] == "not_promoted"
        assert "not better than champion" in newest.tags["nextoffer.reason"]
    weak_offers = registry.versions("offers")[0].metrics["ndcg_at_10"]
    assert weak_offers < before["offers"].metrics["ndcg_at_10"]  # type: ignore[union-attr]
    weak_churn = registry.versions("churn")[0].metrics["roc_auc"]
    assert weak_churn < before["churn"].metrics["roc_auc"]  # type: ignore[union-attr]

    # Scoring after the run used the champion, not the weak challenger, and kept history.
    with cli_env.engine.connect() as conn:
        runs = conn.execute(
            select(ChurnScore.scored_at, ChurnScore.model_version, func.count())
            .group_by(ChurnScore.scored_at, ChurnScore.model_version)
            .order_by(ChurnScore.scored_at)
        ).all()
    assert len(runs) >= 2
    assert runs[-1][1] == f"v{before['churn'].version}"  # type: ignore[union-attr]
    assert runs[-1][2] == runs[0][2]

    # Operators can still promote by hand and roll back.
    newest = registry.versions("offers")[0].version
    promoted = CliRunner().invoke(app, ["models", "promote", "offers", str(newest)])
    assert promoted.exit_code == 0, promoted.output
    assert registry.champion("offers").version == newest  # type: ignore[union-attr]
    rolled = CliRunner().invoke(app, ["models", "rollback", "offers"])
    assert rolled.exit_code == 0, rolled.output
    assert registry.champion("offers").version == before["offers"].version  # type: ignore[union-attr]

    listing = CliRunner().invoke(app, ["models", "list", "--json"])
    assert listing.exit_code == 0, listing.output
    listed = json.loads(listing.output)
    assert [v["champion"] for v in listed["offers"]].count(True) == 1


def test_quality_gauges_export_the_champions_metrics(trained_world: TrainedWorld) -> None:
    registry = CollectorRegistry()
    registry.register(ModelQualityCollector(trained_world.registry, cache_seconds=0))
    text = generate_latest(registry).decode()
    offers = trained_world.registry.champion("offers")
    churn = trained_world.registry.champion("churn")
    assert offers is not None and churn is not None
    lines = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    ndcg = [
        v
        for k, v in lines.items()
        if k.startswith("nextoffer_model_quality")
        and 'metric="ndcg_at_10"' in k
        and 'model="offers"' in k
    ]
    assert ndcg == [pytest.approx(offers.metrics["ndcg_at_10"])]
    auc = [v for k, v in lines.items() if 'metric="roc_auc"' in k and 'model="churn"' in k]
    assert auc == [pytest.approx(churn.metrics["roc_auc"])]
    assert lines['nextoffer_model_drift_flag{model="churn"}'] == 0.0
