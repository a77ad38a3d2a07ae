"""Uplift models on a Hillstrom-shaped simulated email experiment → results/uplift.json.

The simulation copies the shape of Kevin Hillstrom's public MineThatData e-mail experiment
(64,000 customers; a men's e-mail, a women's e-mail or none, a third each; recency,
history, mens, womens, zip_code, newbie, channel; visit rates about 18 %, 15 % and 10.6 %)
with a planted, heterogeneous effect on the log-odds of a visit. Both e-mails count as
treated, as in `nextoffer evaluate uplift --treated ... --control "No E-Mail"` on the real
file after merging the two e-mail arms. `effect_scale` shrinks or stretches the
heterogeneity (not the average effect much). Reported per scale and seed: the Qini AUC of
the random ranking, the true uplift (an upper bound for any model), a T-learner with
LightGBM's default settings, and every model of `nextoffer evaluate uplift`, all on the
same 5-fold out-of-fold predictions.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from bench.common import machine, timed, write_result
from nextoffer.evaluation.uplift import qini_auc_score
from nextoffer.models.tabular import infer_columns
from nextoffer.models.uplift import TwoModel
from nextoffer.pipelines.evaluate_uplift import UpliftEvaluationConfig, evaluate_uplift

# LightGBM's own defaults, for the "untuned two-model" reference.
LIGHTGBM_DEFAULTS: dict[str, Any] = {
    "learning_rate": 0.1,
    "num_leaves": 31,
    "max_depth": -1,
    "min_child_samples": 20,
    "feature_fraction": 1.0,
    "bagging_fraction": 1.0,
    "bagging_freq": 0,
    "lambda_l2": 0.0,
    "min_data_per_group": 100,
    "cat_smooth": 10.0,
    "num_boost_round": 100,
}
CONTROL = "No E-Mail"


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=float)


def hillstrom_like(rows: int, seed: int, effect_scale: float) -> tuple[pd.DataFrame, np.ndarray]:
    """A simulated e-mail experiment and the true uplift of "any e-mail" for each customer."""
    rng = np.random.default_rng(seed)
    recency = rng.choice(
        np.arange(1, 13), rows, p=np.array([14, 13, 9, 8, 8, 7, 7, 7, 9, 10, 4, 4]) / 100
    )
    history = np.minimum(29.99 + np.exp(rng.normal(4.85, 1.0, rows)), 3345.0).round(2)
    kind = rng.choice(3, rows, p=[0.45, 0.45, 0.10])
    mens, womens = (kind != 1).astype(int), (kind != 0).astype(int)
    zip_code = rng.choice(["Surburban", "Urban", "Rural"], rows, p=[0.45, 0.40, 0.15])
    newbie = rng.integers(0, 2, rows)
    channel = rng.choice(["Web", "Phone", "Multichannel"], rows, p=[0.44, 0.44, 0.12])
    segment = rng.choice(["Mens E-Mail", "Womens E-Mail", CONTROL], rows)
    web, multi = channel == "Web", channel == "Multichannel"
    log_history = np.log(history / 150)
    base = (
        -2.33
        - 0.08 * (recency - 6)
        + 0.3 * log_history
        - 0.45 * newbie
        + 0.25 * web
        + 0.4 * multi
        + 0.3 * (zip_code == "Rural")
        + 0.1 * womens
    )
    mens_effect = 0.45 + effect_scale * (
        0.45 * mens
        - 0.25 * womens
        - 0.06 * (recency - 6)
        + 0.15 * log_history
        + 0.2 * web
        - 0.2 * newbie
    )
    womens_effect = 0.16 + effect_scale * (
        0.45 * womens - 0.25 * mens - 0.05 * (recency - 6) + 0.1 * log_history + 0.15 * web
    )
    p_none, p_mens, p_womens = (
        _sigmoid(base),
        _sigmoid(base + mens_effect),
        _sigmoid(base + womens_effect),
    )
    p = np.where(segment == CONTROL, p_none, np.where(segment == "Mens E-Mail", p_mens, p_womens))
    table = pd.DataFrame(
        {
            "recency": recency,
            "history": history,
            "mens": mens,
            "womens": womens,
            "zip_code": zip_code,
            "newbie": newbie,
            "channel": channel,
            "segment": np.where(segment == CONTROL, CONTROL, "E-Mail"),
            "visit": (rng.random(rows) < p).astype(int),
        }
    )
    true_uplift = 0.5 * (p_mens - p_none) + 0.5 * (p_womens - p_none)
    return table, true_uplift


def untuned_two_model(table: pd.DataFrame, folds: int, seed: int) -> np.ndarray:
    """Out-of-fold uplift of a T-learner with LightGBM's defaults, on the pipeline's folds."""
    t = (table["segment"] != CONTROL).to_numpy(dtype=int)
    y = table["visit"].to_numpy()
    features = table.drop(columns=["segment"])
    schema = infer_columns(features, "visit", None)
    out = np.zeros(len(table))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(np.zeros(len(y)), 2 * t + y):
        model = TwoModel(schema, params=LIGHTGBM_DEFAULTS, seed=seed, outcome="binary")
        model.fit(features.iloc[train], t[train], y[train])
        out[test] = model.predict_uplift(features.iloc[test])
    return out


def run(rows: int, seed: int, effect_scale: float, folds: int) -> dict[str, Any]:
    """Every ranking's Qini AUC on one simulated experiment."""
    table, truth = hillstrom_like(rows, seed, effect_scale)
    config = UpliftEvaluationConfig(
        treatment_col="segment",
        treated="E-Mail",
        control=CONTROL,
        outcome="visit",
        folds=folds,
        seed=seed,
    )
    with timed() as elapsed:
        result = evaluate_uplift(table, config)
    t, y = result.treatment, result.outcome
    qini = {name: scores.qini_auc for name, scores in result.scores.items()}
    qini["true_uplift"] = qini_auc_score(y, truth, t)
    qini["two_model_lightgbm_defaults"] = qini_auc_score(
        y, untuned_two_model(table, folds, seed), t
    )
    return {
        "rows": rows,
        "seed": seed,
        "effect_scale": effect_scale,
        "visit_rate": {"treated": result.ate.treated_mean, "control": result.ate.control_mean},
        "qini_auc": qini,
        "uplift_at_30": {name: s.uplift_at_30 for name, s in result.scores.items()},
        "correlation_with_truth": {
            name: float(np.corrcoef(result.predictions[name], truth)[0, 1])
            for name in result.predictions
        },
        "evaluate_seconds": elapsed(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=64_000)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--scales", default="0.6,1.0", help="comma-separated effect scales")
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    runs = [
        run(args.rows, seed, float(scale), args.folds)
        for scale in args.scales.split(",")
        for seed in range(args.seeds)
    ]
    for item in runs:
        shown = {k: round(v, 4) for k, v in item["qini_auc"].items()}
        print(f"scale {item['effect_scale']} seed {item['seed']}: qini_auc {shown}")
    path = write_result("uplift", {"machine": machine(), "runs": runs})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
