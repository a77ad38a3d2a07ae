"""The training job end to end on both engines: versions, decisions, churn score history."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from nextoffer.config import Settings
from nextoffer.domain.errors import NothingToLearnError
from nextoffer.jobs.calls import run_training
from nextoffer.pipelines.etl import run_ingest
from nextoffer.pipelines.features import run_features
from nextoffer.pipelines.train import TrainOverrides
from nextoffer.registry.mlflow_registry import ModelRegistry
from nextoffer.store import migrate
from nextoffer.store.engine import make_engine
from nextoffer.store.runs import last_runs
from nextoffer.store.schema import ChurnScore, UserFeatures
from nextoffer.synth.generator import generate_world

PINNED = TrainOverrides(churn={"num_leaves": 7, "num_boost_round": 200})


def test_churn_training_registers_scores_and_keeps_history(
    database_url: str, tmp_path: Path
) -> None:
    generate_world(tmp_path / "data", 3000, seed=5)
    settings = Settings(
        database_url=database_url,
        var_dir=tmp_path / "var",
        registry_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifacts_url=f"file://{tmp_path / 'artifacts'}",
        train_threads=1,
    )
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    run_ingest(engine, settings, tmp_path / "data")
    run_features(engine, settings)
    registry = ModelRegistry.from_settings(settings)

    first = run_training(engine, settings, registry, kinds=["churn"], overrides=PINNED)
    second = run_training(engine, settings, registry, kinds=["churn"], overrides=PINNED)

    # Same data, same settings: the same quality, so the champion stays where it was.
    assert first.decisions["churn"].promoted
    assert not second.decisions["churn"].promoted
    assert second.churn.metrics["roc_auc"] == pytest.approx(first.churn.metrics["roc_auc"])  # type: ignore[union-attr]
    assert registry.champion("churn").version == first.decisions["churn"].version  # type: ignore[union-attr]

    with engine.connect() as conn:
        customers = conn.execute(select(func.count()).select_from(UserFeatures)).scalar()
        history = conn.execute(
            select(ChurnScore.scored_at, func.count(), func.min(ChurnScore.model_version))
            .group_by(ChurnScore.scored_at)
            .order_by(ChurnScore.scored_at)
        ).all()
        one = conn.execute(
            select(ChurnScore.top_reasons).where(ChurnScore.band == "high").limit(1)
        ).scalar_one()
    assert [row[1] for row in history] == [customers, customers]
    assert {row[2] for row in history} == {f"v{first.decisions['churn'].version}"}
    assert (
        isinstance(one, list)
        and one
        and {"feature", "value", "contribution", "text"} <= set(one[0])
    )

    runs = last_runs(engine, "training")
    assert [r.status for r in runs] == ["succeeded", "succeeded"]
    assert runs[0].counts["churn_promoted"] is False
    engine.dispose()


def test_training_without_features_fails_cleanly_and_is_recorded(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'empty.db'}",
        var_dir=tmp_path / "var",
        registry_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifacts_url=f"file://{tmp_path / 'artifacts'}",
    )
    engine = make_engine(settings.database_url)
    migrate.upgrade(engine)
    # Not a ValueError any more: "nothing to learn from" is an input problem, told in one line.
    with pytest.raises(NothingToLearnError, match="nextoffer features"):
        run_training(engine, settings, ModelRegistry.from_settings(settings), kinds=["offers"])
    runs = last_runs(engine, "training")
    assert runs[0].status == "failed" and "nextoffer features" in (runs[0].message or "")
