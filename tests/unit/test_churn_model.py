"""Churn model: planted signal is found, calibration helps, explanations, persistence, evaluation.

`tests/fixtures/churn/telco_yes_no.csv` was written once by a short script (numpy seed 7): 300
rows in the IBM telco churn shape, 8 new customers with a blank " " TotalCharges, and churn drawn
from a planted logistic model (month-to-month contract, short tenure, high monthly charges,
electronic check and seniors raise the risk; a partner lowers it).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score

from nextoffer.models.churn import (
    ChurnModel,
    fit_platt,
    logistic_baseline,
    risk_band,
    tune_churn_params,
)
from nextoffer.models.churn_eval import LIGHTGBM, LOGISTIC, evaluate_churn_table
from nextoffer.models.tabular import TableSchema, infer_columns, parse_label

REPO_ROOT = Path(__file__).absolute().parent.parent.parent
FIXTURE = REPO_ROOT / "tests" / "fixtures" / "churn" / "telco_yes_no.csv"
SHARED_DATA_ENV = "NEXTOFFER_SHARED_DATA"
BIGML_DIR = "telco-churn-bigml"
SMALL_GRID = [
    {"num_leaves": 7, "learning_rate": 0.05, "min_child_samples": 30},
    {"num_leaves": 15, "learning_rate": 0.05, "min_child_samples": 20},
]


def planted(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """A table whose churn follows a known logistic model; x_strong dominates it."""
    rng = np.random.default_rng(seed)
    x_strong = rng.normal(size=n)
    x_weak = rng.normal(size=n)
    plan = rng.choice(["basic", "plus", "max"], size=n)
    roaming = rng.choice(["Yes", "No"], size=n)
    logit = (
        -2.0 + 2.0 * x_strong + 0.4 * x_weak + 0.5 * (plan == "basic") + 0.3 * (roaming == "Yes")
    )
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    df = pd.DataFrame(
        {
            "x_strong": x_strong,
            "x_weak": x_weak,
            "noise": rng.normal(size=n),
            "plan": plan,
            "roaming": roaming,
            "churned": np.where(y == 1, "yes", "no"),
        }
    )
    return df, y


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray, TableSchema]:
    train, y_train = planted(3000, seed=1)
    test, y_test = planted(3000, seed=2)
    return train, y_train, test, y_test, infer_columns(train, "churned", None)


@pytest.fixture(scope="module")
def model(
    data: tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray, TableSchema],
) -> ChurnModel:
    train, y_train, _, _, schema = data
    return ChurnModel().fit(train, y_train, schema, seed=3)


def test_planted_signal_gives_high_held_out_auc(model: ChurnModel, data: tuple) -> None:
    _, _, test, y_test, schema = data

    proba = model.predict_proba(test)

    assert schema.numeric == ("x_strong", "x_weak", "noise")
    assert schema.boolean == ("roaming",)
    assert proba.shape == (len(test),)
    assert ((proba >= 0) & (proba <= 1)).all()
    assert roc_auc_score(y_test, proba) > 0.8


def test_calibration_does_not_worsen_brier(model: ChurnModel, data: tuple) -> None:
    _, _, test, y_test, _ = data

    calibrated = brier_score_loss(y_test, model.predict_proba(test))
    raw = brier_score_loss(y_test, model.predict_raw(test))

    assert calibrated <= raw + 0.002


def test_calibration_repairs_a_miscalibrated_model(data: tuple) -> None:
    train, y_train, test, y_test, schema = data
    # Weighting positives 8× inflates LightGBM's probabilities by about log(8) in log-odds.
    skewed = ChurnModel().fit(train, y_train, schema, params={"scale_pos_weight": 8.0})

    raw = skewed.predict_raw(test)
    calibrated = skewed.predict_proba(test)

    assert raw.mean() > y_test.mean() + 0.08
    assert abs(calibrated.mean() - y_test.mean()) < 0.03
    assert brier_score_loss(y_test, calibrated) < brier_score_loss(y_test, raw) - 0.02
    # Platt scaling is monotone: the ranking, and so the AUC, is untouched.
    assert roc_auc_score(y_test, calibrated) == pytest.approx(roc_auc_score(y_test, raw), abs=1e-9)


def test_platt_on_calibrated_scores_is_close_to_identity() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.02, 0.98, 20000)
    y = (rng.random(p.size) < p).astype(int)

    platt = fit_platt(p, y)

    assert platt.slope == pytest.approx(1.0, abs=0.08)
    assert platt.intercept == pytest.approx(0.0, abs=0.08)


def test_explain_names_the_strong_feature_on_high_risk_rows(model: ChurnModel, data: tuple) -> None:
    _, _, test, _, _ = data
    proba = model.predict_proba(test)
    risky = test.iloc[np.argsort(-proba)[: len(test) // 10]]

    explanations = model.explain(risky, top=3)

    assert len(explanations) == len(risky)
    firsts = Counter(row[0]["feature"] for row in explanations if row)
    assert firsts.most_common(1)[0][0] == "x_strong"
    for (_, source), row in zip(risky.iterrows(), explanations, strict=True):
        assert 1 <= len(row) <= 3
        contributions = [item["contribution"] for item in row]
        assert all(c > 0 for c in contributions)
        assert contributions == sorted(contributions, reverse=True)
        for item in row:
            assert set(item) == {"feature", "value", "contribution"}
            assert item["value"] == source[item["feature"]]
    json.dumps(explanations)


def test_importance_sums_to_one_sorted_with_strong_feature_first(model: ChurnModel) -> None:
    importance = model.importance()

    assert set(importance) == set(model.schema.features)
    assert sum(importance.values()) == pytest.approx(1.0)
    assert list(importance.values()) == sorted(importance.values(), reverse=True)
    assert next(iter(importance)) == "x_strong"


def test_save_load_round_trip_gives_identical_probabilities(
    model: ChurnModel, data: tuple, tmp_path: Path
) -> None:
    _, _, test, _, _ = data

    model.save(tmp_path / "churn")
    loaded = ChurnModel.load(tmp_path / "churn")

    assert sorted(p.name for p in (tmp_path / "churn").iterdir()) == [
        "calibration.json",
        "meta.json",
        "model.txt",
        "schema.json",
    ]
    np.testing.assert_array_equal(loaded.predict_proba(test), model.predict_proba(test))
    np.testing.assert_array_equal(loaded.predict_raw(test), model.predict_raw(test))
    assert loaded.explain(test.head(5)) == model.explain(test.head(5))
    assert loaded.importance() == pytest.approx(model.importance())
    meta = json.loads((tmp_path / "churn" / "meta.json").read_text())
    assert meta["best_iteration"] == model.best_iteration
    assert meta["feature_names"] == list(model.schema.features)


def test_risk_bands() -> None:
    p = np.array([0.0, 0.1, 0.2, 0.39, 0.4, 0.95])

    assert risk_band(p).tolist() == ["low", "low", "medium", "medium", "high", "high"]
    assert risk_band(p, thresholds=(0.05, 0.5)).tolist() == [
        "low",
        "medium",
        "medium",
        "medium",
        "medium",
        "high",
    ]
    with pytest.raises(ValueError, match="thresholds"):
        risk_band(p, thresholds=(0.5, 0.2))


def test_tuning_picks_the_best_validation_auc(data: tuple) -> None:
    train, y_train, _, _, schema = data

    best, table = tune_churn_params(train, y_train, schema, grid=SMALL_GRID)

    assert [row["params"] for row in table] == SMALL_GRID
    assert best == max(table, key=lambda row: row["validation_auc"])["params"]
    assert all(0.5 < row["validation_auc"] <= 1.0 for row in table)


def test_logistic_baseline_learns_the_signal(data: tuple) -> None:
    train, y_train, test, y_test, schema = data

    baseline = logistic_baseline(schema).fit(train, y_train)

    assert roc_auc_score(y_test, baseline.predict_proba(test)[:, 1]) > 0.8


def test_fit_needs_both_classes(data: tuple) -> None:
    train, _, _, _, schema = data

    with pytest.raises(ValueError, match="each class"):
        ChurnModel().fit(train, np.zeros(len(train), dtype=int), schema)
    with pytest.raises(ValueError, match="shape"):
        ChurnModel().fit(train, np.zeros(3, dtype=int), schema)


def test_evaluate_on_telco_shaped_fixture() -> None:
    df = pd.read_csv(FIXTURE)

    result = evaluate_churn_table(df, "Churn", folds=3, grid=SMALL_GRID)

    assert set(result.models) == {LIGHTGBM, LOGISTIC}
    schema = result.schema
    assert [(d.name, "id" in d.reason) for d in schema.dropped] == [("customerID", True)]
    assert schema.numeric == ("tenure", "MonthlyCharges", "TotalCharges")
    assert schema.boolean == ("SeniorCitizen", "Partner")
    assert set(schema.levels) == {"gender", "Contract", "PaymentMethod"}
    assert set(schema.levels["Contract"]) == {"Month-to-month", "One year", "Two year", "other"}
    assert len(result.chosen_params) == 3
    assert all(params in SMALL_GRID for params in result.chosen_params)
    for scores in result.models.values():
        assert set(scores.mean) == {"roc_auc", "pr_auc", "brier", "lift_top_decile"}
        assert len(scores.per_fold) == 3
    assert result.models[LIGHTGBM].mean["roc_auc"] > 0.6
    report = json.loads(json.dumps(result.to_dict()))
    assert report["schema"]["dropped"] == {"customerID": "looks like an id: every value is unique"}


VENDORED = REPO_ROOT / "tests" / "fixtures" / "churn" / BIGML_DIR


def bigml_dir() -> Path:
    """The BigML telco churn data: $NEXTOFFER_SHARED_DATA, ../shared/data, or the copy here.

    The copy in tests/fixtures is the shared file unchanged (its README says where from), so
    the test runs in any clone; the shared location wins when it is there.
    """
    configured = os.environ.get(SHARED_DATA_ENV)
    if configured:
        directory = Path(configured) / BIGML_DIR
        if not directory.is_dir():
            pytest.fail(f"{SHARED_DATA_ENV}={configured} has no {BIGML_DIR}/ directory")
        return directory
    shared = REPO_ROOT.parent / "shared" / "data" / BIGML_DIR
    return shared if shared.is_dir() else VENDORED


@pytest.mark.slow
def test_real_bigml_churn_data_beats_threshold_and_baseline() -> None:
    directory = bigml_dir()
    df = pd.concat(
        [pd.read_csv(directory / f"churn-bigml-{part}.csv") for part in ("80", "20")],
        ignore_index=True,
    )

    result = evaluate_churn_table(df, "Churn", folds=3, grid=SMALL_GRID)

    assert parse_label(df["Churn"]).sum() > 0
    lightgbm = result.models[LIGHTGBM].mean["roc_auc"]
    assert lightgbm >= 0.85
    assert lightgbm > result.models[LOGISTIC].mean["roc_auc"]
    assert result.schema.boolean == ("International plan", "Voice mail plan")
