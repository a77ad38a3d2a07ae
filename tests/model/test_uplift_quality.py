"""Retention offers ranked by uplift against ranked by churn risk, scored on the planted truth.

The generated campaign (docs/synthetic-data.md, "Planted truth: offer effects") offers a
retention offer to customers at churn risk, 10 % of them held out at random. Its churn
types make risk a poor guide: lost causes sit at the highest risk and sleeping dogs, whom an
offer drives away, are common in some segments. The uplift model learns from the campaign's
training customers; on the held-out test group its ranking is scored against each
customer's true effect, P(churn | control) − P(churn | treated), next to the churn model's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from nextoffer.evaluation.uplift import qini_auc_score, true_qini_auc_score
from nextoffer.pipelines.train_uplift import (
    PRIMARY_METRIC,
    UpliftTraining,
    UpliftTrainingConfig,
    train_uplift,
)
from nextoffer.scoring.champions import load_churn_champion
from nextoffer.scoring.churn import model_frame
from tests.model.conftest import SEED, TrainedWorld

# MLflow's own SQLAlchemy models use a deprecated loader; nothing we can act on.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy")


@dataclass(frozen=True)
class Compared:
    """Both rankings of the held-out retention-offered customers, and the truth."""

    trained: UpliftTraining
    effect: np.ndarray
    uplift: np.ndarray
    churn_risk: np.ndarray


def label_window_days(trained_world: TrainedWorld) -> int:
    """Days after the campaign that churn dates can fall on: strictly inside the label window.

    The planted effects are on churn within the label window, so the model learns the same
    outcome (NEXTOFFER_IMPACT_WINDOW_DAYS set to it, as an operator whose retention horizon
    is the churn labels' would).
    """
    manifest = json.loads((trained_world.data / "manifest.json").read_text())
    end = datetime.fromisoformat(manifest["end"].replace("Z", "+00:00")).date()
    return (end - datetime.fromisoformat(manifest["label_as_of"]).date()).days - 1


@pytest.fixture(scope="module")
def compared(trained_world: TrainedWorld) -> Compared:
    config = UpliftTrainingConfig(window_days=label_window_days(trained_world), seed=SEED)
    trained = train_uplift(trained_world.engine, config)
    test = trained.test
    assert test is not None
    truth = pd.read_csv(trained_world.data / "truth" / "uplift.csv").set_index("customer_id")
    held_out = truth.reindex(test.customer_ids)
    assert held_out["is_retention"].all()  # every example was offered a retention offer
    effect = (held_out["p_churn_control"] - held_out["p_churn_treated"]).to_numpy()
    churn = load_churn_champion(trained_world.registry).model
    return Compared(
        trained=trained,
        effect=effect,
        uplift=trained.model.predict_uplift(test.features),
        churn_risk=churn.predict_proba(model_frame(churn, test.features)),
    )


def test_ranking_by_uplift_beats_ranking_by_churn_risk_on_the_truth(compared: Compared) -> None:
    test = compared.trained.test
    assert test is not None
    true_uplift = true_qini_auc_score(compared.effect, compared.uplift)
    true_risk = true_qini_auc_score(compared.effect, compared.churn_risk)
    observed_uplift = qini_auc_score(test.retained, compared.uplift, test.treatment)
    observed_risk = qini_auc_score(test.retained, compared.churn_risk, test.treatment)
    print(
        f"\nuplift ({compared.trained.chosen}) vs churn risk on {len(test):,} held-out "
        f"retention-offered customers ({int(test.treatment.sum()):,} treated): "
        f"true Qini AUC {true_uplift:+.3f} vs {true_risk:+.3f}; "
        f"observed Qini AUC {observed_uplift:+.3f} vs {observed_risk:+.3f}"
    )
    assert true_uplift > true_risk
    # Better than picking at random too, not merely less bad than churn risk.
    assert true_uplift > 0
    # The planted story holds: risk puts lost causes and sleeping dogs first.
    assert true_risk < 0
    # Observed-outcome Qini is the registry's primary metric, on the same customers.
    assert compared.trained.metrics[PRIMARY_METRIC] == pytest.approx(observed_uplift)


def test_the_test_group_was_never_learnt_from(compared: Compared) -> None:
    trained = compared.trained
    assert trained.test is not None
    assert trained.rows["train"] + trained.rows["test"] == trained.rows["examples"]
    # A stable fifth of the customers, with both arms.
    assert 0.15 < trained.rows["test"] / trained.rows["examples"] < 0.25
    assert trained.metrics["test_control"] >= 30 and trained.metrics["test_treated"] >= 300


def test_nextoffer_train_registered_uplift_by_qini_auc(trained_world: TrainedWorld) -> None:
    # The session's training ran with the default 30-day window; the world has enough
    # randomised retention offers for it (docs/models.md: 200 customers, 20 churners per arm).
    first = trained_world.first
    assert "uplift" not in first.skipped and first.uplift is not None
    decision = first.decisions["uplift"]
    assert decision.primary_metric == PRIMARY_METRIC
    assert decision.challenger_value == pytest.approx(first.uplift.metrics[PRIMARY_METRIC])
    # Promoted exactly when its test Qini AUC beats a random ranking's 0.
    assert decision.promoted is (decision.challenger_value > 0)
