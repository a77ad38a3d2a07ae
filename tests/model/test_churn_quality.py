"""The churn model against the generator's own churn probabilities, on held-out customers."""

from __future__ import annotations

import pandas as pd
from sklearn.metrics import roc_auc_score
from sqlalchemy import func, select

from nextoffer.store.schema import ChurnScore, UserFeatures
from tests.model.conftest import TrainedWorld


def _truth_auc(trained_world: TrainedWorld) -> float:
    truth = pd.read_csv(trained_world.data / "truth" / "customers.csv")
    labels = pd.read_csv(trained_world.data / "churn_labels.csv").merge(truth, on="customer_id")
    return float(roc_auc_score(labels["churned"], labels["churn_probability"]))


def test_held_out_auc_is_close_to_the_truth_ceiling(trained_world: TrainedWorld) -> None:
    churn = trained_world.first.churn
    assert churn is not None
    ceiling = _truth_auc(trained_world)
    assert 0.7 < ceiling < 0.95  # the generator's planted signal is there
    assert churn.metrics["roc_auc"] >= 0.9 * ceiling, (churn.metrics, ceiling)
    assert churn.rows["test"] >= 0.2 * churn.rows["labelled"]


def test_calibration_improves_brier(trained_world: TrainedWorld) -> None:
    metrics = trained_world.first.churn.metrics  # type: ignore[union-attr]
    assert metrics["brier"] < metrics["brier_uncalibrated"]
    # Calibrated probabilities average out near the held-out churn rate.
    assert metrics["brier"] <= metrics["baseline_brier"] * 1.02


def test_every_customer_is_scored_with_band_and_reasons(trained_world: TrainedWorld) -> None:
    with trained_world.engine.connect() as conn:
        first_scored = conn.execute(select(func.min(ChurnScore.scored_at))).scalar()
        scores = pd.DataFrame(
            conn.execute(
                select(
                    ChurnScore.customer_id,
                    ChurnScore.score,
                    ChurnScore.band,
                    ChurnScore.top_reasons,
                    ChurnScore.model_version,
                ).where(ChurnScore.scored_at == first_scored)
            ).all()
        )
        customers = conn.execute(select(func.count()).select_from(UserFeatures)).scalar()
    assert len(scores) == customers
    assert scores["customer_id"].is_unique
    assert scores["score"].between(0, 1).all()
    assert set(scores["band"]) == {"low", "medium", "high"}
    assert (scores["model_version"] == "v1").all()
    high = scores[scores["band"] == "high"]
    assert high["top_reasons"].map(len).ge(1).mean() > 0.95
    assert all(
        r["text"] and r["contribution"] > 0 for reasons in high["top_reasons"] for r in reasons
    )
    # The planted drivers come out as reasons: contract and service contacts lead.
    features = pd.Series([r["feature"] for reasons in high["top_reasons"] for r in reasons])
    assert {"contract_type", "support_contacts_90d"} <= set(features.value_counts().index[:4])
    # Bands follow the generator's true risk.
    truth = pd.read_csv(trained_world.data / "truth" / "customers.csv")
    merged = scores.merge(truth, on="customer_id").dropna(subset=["churn_probability"])
    by_band = merged.groupby("band")["churn_probability"].mean()
    assert by_band["low"] < by_band["medium"] < by_band["high"]


def test_importance_and_drift_are_recorded_with_the_version(trained_world: TrainedWorld) -> None:
    churn = trained_world.first.churn
    assert churn is not None
    importance = churn.model.importance()
    assert abs(sum(importance.values()) - 1) < 1e-6
    assert next(iter(importance)) in {"contract_type", "support_contacts_90d", "tenure_months"}
    version = trained_world.registry.champion("churn")
    assert version is not None
    for key in ("roc_auc", "pr_auc", "brier", "lift_top_decile", "max_psi", "drift_flag"):
        assert key in version.metrics
    # Training and today's features come from the same world: no drift flag.
    assert version.metrics["drift_flag"] == 0.0
    assert 0 <= version.metrics["max_psi"] < 0.2
