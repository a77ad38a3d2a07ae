"""The numpy tree walker predicts what LightGBM predicts, from the booster's saved text."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from nextoffer.models.trees import Forest, UnsupportedModelError


def _data(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Numbers with NaNs and exact zeros, and categories with NaN, unseen and negative codes."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 5))
    x[:, 1] = np.round(x[:, 1], 1)  # many exact zeros
    x[:, 3] = rng.integers(0, 40, rows)  # a categorical with more than 32 levels
    x[:, 4] = rng.integers(0, 4, rows)
    x[rng.random(rows) < 0.1, 0] = np.nan
    x[rng.random(rows) < 0.1, 3] = np.nan
    logit = x[:, 2] + np.nan_to_num(x[:, 0]) + (x[:, 3] % 3 == 0) - (x[:, 4] == 2) + 2 * x[:, 1]
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(float)
    return x, y


def _train(params: dict[str, object], rounds: int = 40) -> lgb.Booster:
    x, y = _data(3000, 1)
    data = lgb.Dataset(x, y, categorical_feature=[3, 4])
    return lgb.train(
        {
            "verbose": -1,
            "num_threads": 1,
            "num_leaves": 15,
            "min_data_in_leaf": 5,
            "seed": 3,
            **params,
        },
        data,
        num_boost_round=rounds,
    )


def _scoring_rows() -> np.ndarray:
    x, _ = _data(2000, 2)
    x[:5, 3] = [-1.0, -0.5, 55.0, 1e10, np.nan]  # negative, truncating to 0, unseen, huge
    x[5:10, 1] = [0.0, -0.0, 1e-36, np.nan, 1e-30]
    return x.astype(np.float32)


@pytest.mark.parametrize(
    "params",
    [
        {"objective": "binary"},
        {"objective": "binary", "zero_as_missing": True},
        {"objective": "binary", "use_missing": False},
        {"objective": "binary", "sigmoid": 0.7, "max_cat_to_onehot": 8},
        {"objective": "regression"},
    ],
)
def test_forest_equals_lightgbm_predict(params: dict[str, object]) -> None:
    booster = _train(params)
    forest = Forest.from_text(booster.model_to_string())
    rows = _scoring_rows()
    expected = booster.predict(rows)
    got = forest.predict(rows)
    assert got.dtype == np.float64
    assert np.max(np.abs(got - expected)) <= 1e-12
    # Not a trivial model: predictions spread, categorical splits taken.
    assert np.ptp(expected) > 0.1
    assert forest.categorical.any()


def test_forest_stops_at_the_chosen_iteration_and_reads_saved_files(tmp_path: Path) -> None:
    booster = _train({"objective": "binary"})
    rows = _scoring_rows()
    forest = Forest.from_text(booster.model_to_string(), num_iteration=7)
    assert forest.n_trees == 7
    assert np.max(np.abs(forest.predict(rows) - booster.predict(rows, num_iteration=7))) <= 1e-12
    path = tmp_path / "model.txt"
    booster.save_model(str(path), num_iteration=12)
    saved = Forest.load(path)
    assert saved.n_trees == 12
    assert np.max(np.abs(saved.predict(rows) - booster.predict(rows, num_iteration=12))) <= 1e-12


def test_forest_refuses_what_it_cannot_predict() -> None:
    x, y = _data(500, 4)
    linear = lgb.train(
        {"verbose": -1, "num_threads": 1, "linear_tree": True, "objective": "regression"},
        lgb.Dataset(np.nan_to_num(x), y),
        num_boost_round=3,
    )
    with pytest.raises(UnsupportedModelError, match="linear"):
        Forest.from_text(linear.model_to_string())
    multi = lgb.train(
        {"verbose": -1, "num_threads": 1, "objective": "multiclass", "num_class": 3},
        lgb.Dataset(x, (y + (x[:, 2] > 1)).astype(int)),
        num_boost_round=2,
    )
    with pytest.raises(UnsupportedModelError):
        Forest.from_text(multi.model_to_string())
