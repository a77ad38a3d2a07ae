"""The uplift model contract: fit, predict_uplift, save and load in text/JSON, exact round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nextoffer.models.tabular import TableSchema, infer_columns
from nextoffer.models.uplift import UPLIFT_MODELS, TwoModel, UpliftModel, load_uplift_model


def simulated_experiment(
    rows: int, seed: int, treated_share: float = 2 / 3
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """A randomised offer with a heterogeneous effect: (table, treatment, outcome, true uplift).

    Recent customers are persuadable, long-lapsed ones are sleeping dogs (the offer makes
    them less likely to respond), web customers respond more. The table's columns include a
    name with a space and punctuation, a yes/no flag and a categorical column.
    """
    rng = np.random.default_rng(seed)
    recency = rng.integers(1, 13, rows)
    history = np.round(29.99 + np.exp(rng.normal(4.85, 1.0, rows)), 2)
    channel = rng.choice(["Web", "Phone", "Multichannel"], rows, p=[0.45, 0.4, 0.15])
    newbie = rng.integers(0, 2, rows)
    t = (rng.random(rows) < treated_share).astype(int)
    base = -1.8 - 0.05 * (recency - 6) - 0.3 * newbie + 0.2 * np.log(history / 150)
    effect = 1.2 * (recency <= 4) - 0.8 * (recency >= 9) + 0.6 * (channel == "Web")

    def sigmoid(z: np.ndarray) -> np.ndarray:
        return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=float)

    y = (rng.random(rows) < sigmoid(base + effect * t)).astype(int)
    table = pd.DataFrame(
        {
            "recency": recency,
            "history [EUR]": history,
            "sales channel": channel,
            "newbie": np.where(newbie == 1, "yes", "no"),
            "visit": y,
        }
    )
    return table, t, y, sigmoid(base + effect) - sigmoid(base)


@pytest.fixture(scope="module")
def experiment() -> tuple[pd.DataFrame, np.ndarray, np.ndarray, TableSchema]:
    table, t, y, _ = simulated_experiment(1_500, seed=5)
    return table, t, y, infer_columns(table, "visit", None)


@pytest.mark.parametrize("name", list(UPLIFT_MODELS))
def test_save_and_load_give_the_same_uplift(
    name: str, experiment: tuple[pd.DataFrame, np.ndarray, np.ndarray, TableSchema], tmp_path: Path
) -> None:
    table, t, y, schema = experiment
    model = UPLIFT_MODELS[name](schema, seed=3).fit(table, t, y)
    before = model.predict_uplift(table)

    model.save(tmp_path)
    same_class = UPLIFT_MODELS[name].load(tmp_path)
    any_class = load_uplift_model(tmp_path)

    assert before.shape == (len(table),)
    # Not a constant: the model found the planted heterogeneity.
    assert np.std(before) > 0.01
    np.testing.assert_allclose(same_class.predict_uplift(table), before, rtol=0, atol=1e-12)
    np.testing.assert_allclose(any_class.predict_uplift(table), before, rtol=0, atol=1e-12)
    assert type(any_class) is UPLIFT_MODELS[name]
    # Safe formats only: LightGBM text models and JSON, nothing that unpickles.
    files = sorted(p.name for p in tmp_path.iterdir())
    assert all(f.endswith((".txt", ".json")) for f in files), files
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert (meta["model"], meta["binary"]) == (name, True)
    assert meta["propensity"] == pytest.approx(t.mean())
    assert {f[:-4] for f in files if f.endswith(".txt")} == set(meta["roles"])


def test_models_recover_the_planted_effect_on_new_rows(
    experiment: tuple[pd.DataFrame, np.ndarray, np.ndarray, TableSchema],
) -> None:
    table, t, y, schema = experiment
    fresh, _, _, truth = simulated_experiment(2_000, seed=6)

    for name, cls in UPLIFT_MODELS.items():
        predicted = cls(schema, seed=3).fit(table, t, y).predict_uplift(fresh)
        # Ranked like the truth on customers the model never saw.
        assert np.corrcoef(predicted, truth)[0, 1] > 0.75, name


def test_a_numeric_outcome_fits_regressors(
    experiment: tuple[pd.DataFrame, np.ndarray, np.ndarray, TableSchema], tmp_path: Path
) -> None:
    table, t, y, schema = experiment
    spend = y * np.random.default_rng(0).gamma(2.0, 40.0, len(y))

    model = TwoModel(schema, seed=1).fit(table, t, spend)
    model.save(tmp_path)

    assert model.binary is False
    assert "objective=regression" in (tmp_path / "treated.txt").read_text()
    np.testing.assert_allclose(
        TwoModel.load(tmp_path).predict_uplift(table), model.predict_uplift(table), atol=1e-12
    )


def test_misuse_is_refused(
    experiment: tuple[pd.DataFrame, np.ndarray, np.ndarray, TableSchema], tmp_path: Path
) -> None:
    table, t, y, schema = experiment
    model: UpliftModel = TwoModel(schema)

    with pytest.raises(RuntimeError, match="not fitted"):
        model.predict_uplift(table)
    with pytest.raises(ValueError, match="treatment must hold only 0"):
        model.fit(table, t * 2, y)
    with pytest.raises(ValueError, match="control arm needs at least 2 rows"):
        model.fit(table, np.ones(len(table)), y)
    with pytest.raises(ValueError, match="outcome='binary'"):
        TwoModel(schema, outcome="binary").fit(table, t, y * 2.5)
    model.fit(table, t, y).save(tmp_path)
    with pytest.raises(ValueError, match="not 'solo_model'"):
        UPLIFT_MODELS["solo_model"].load(tmp_path)
