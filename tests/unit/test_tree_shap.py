"""TreeSHAP in numpy gives LightGBM's `pred_contrib`; one cell encodes as a column does.

The lean churn model explains live customers with `models.tree_shap` and encodes their
feature rows with `models.cells`; LightGBM and `models.tabular` (pandas) are the reference.
"""

from __future__ import annotations

import math

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from nextoffer.models.cells import boolean_cell, category_code, numeric_cell
from nextoffer.models.tabular import CategoricalColumn, TableSchema, encode_for_trees
from nextoffer.models.tree_shap import TreeExplainer
from nextoffer.models.trees import Forest, node_counts


def _data(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Eight columns: NaNs, exact zeros, two categoricals (one wider than 32 levels)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 8))
    x[:, 1] = np.round(x[:, 1], 1)
    x[:, 3] = rng.integers(0, 40, rows)
    x[:, 4] = rng.integers(0, 4, rows)
    x[rng.random(rows) < 0.1, 0] = np.nan
    x[rng.random(rows) < 0.1, 3] = np.nan
    logit = (
        x[:, 2] * x[:, 5]
        + np.nan_to_num(x[:, 0])
        + (x[:, 3] % 3 == 0)
        - (x[:, 4] == 2)
        + 2 * x[:, 1]
        + np.sin(3 * x[:, 6])
    )
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(float)
    return x, y


@pytest.mark.parametrize(
    "params",
    [
        {"num_leaves": 31},
        {"num_leaves": 63, "min_data_in_leaf": 2},  # deep paths that split a feature twice
        {"num_leaves": 15, "zero_as_missing": True},
    ],
)
def test_contributions_equal_lightgbm_pred_contrib(params: dict[str, object]) -> None:
    x, y = _data(2000, 1)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_threads": 1, "seed": 3, **params},
        lgb.Dataset(x, y, categorical_feature=[3, 4]),
        num_boost_round=30,
    )
    text = booster.model_to_string()
    forest = Forest.from_text(text)
    explainer = TreeExplainer.build(forest, *node_counts(text))
    assert max(g.degree for g in explainer.groups) >= 5
    test, _ = _data(300, 2)
    test[:5, 3] = [-1.0, 55.0, np.nan, 0.0, 39.0]  # negative, unseen, missing categories
    expected = np.asarray(booster.predict(test, pred_contrib=True))
    got = explainer.contributions(test)
    assert np.max(np.abs(got - expected[:, :-1])) <= 1e-9
    # Contributions add up to the raw score, less LightGBM's expected value (its bias column).
    assert np.allclose(got.sum(axis=1) + expected[:, -1], forest.raw(test), atol=1e-9)


def test_single_row_blocks_agree_with_many_rows() -> None:
    x, y = _data(1000, 4)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_threads": 1, "num_leaves": 15},
        lgb.Dataset(x, y, categorical_feature=[3, 4]),
        num_boost_round=10,
    )
    text = booster.model_to_string()
    explainer = TreeExplainer.build(Forest.from_text(text), *node_counts(text))
    together = explainer.contributions(x[:20])
    alone = np.vstack([explainer.contributions(x[i : i + 1]) for i in range(20)])
    assert np.array_equal(together, alone)


MESSY: list[object] = [
    None,
    math.nan,
    "",
    "  ",
    " Yes ",
    "n",
    "TRUE",
    "0",
    "1",
    "3.5",
    " 2e3 ",
    "abc",
    "month_to_month",
    " month_to_month ",
    "unseen",
    0,
    1,
    2,
    1.0,
    7.25,
    True,
    False,
    np.float64(1.0),
    np.int64(0),
]


@pytest.mark.parametrize("value", MESSY, ids=repr)
def test_a_cell_encodes_as_a_one_row_column(value: object) -> None:
    levels = ("missing", "month_to_month", "one_year", "other")
    schema = TableSchema(
        label="churned",
        id_col=None,
        numeric=("n",),
        boolean=("b",),
        categorical=(CategoricalColumn("c", levels),),
        dropped=(),
    )
    column = pd.Series([value], dtype=object if isinstance(value, str | None) else None)
    table = pd.DataFrame({"n": column, "b": column, "c": column})
    encoded = encode_for_trees(table, schema)
    expected = [
        float(encoded["n"].iloc[0]),
        float(encoded["b"].iloc[0]),
        float(encoded["c"].cat.codes.iloc[0]),
    ]
    codes = {level: i for i, level in enumerate(levels)}
    got = [numeric_cell(value), boolean_cell(value), category_code(value, codes, 3)]
    assert np.array_equal(got, expected, equal_nan=True)
