"""Cross-validated evaluation of the churn model against a logistic baseline on any table."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from nextoffer.evaluation.metrics import classification_metrics
from nextoffer.models.churn import ChurnModel, logistic_baseline, tune_churn_params
from nextoffer.models.tabular import DEFAULT_MIN_COUNT, TableSchema, infer_columns, parse_label

LIGHTGBM = "lightgbm"
LOGISTIC = "logistic"
# The metrics summarised over folds; classification_metrics also gives positives_rate and rows.
SUMMARY_METRICS = ("roc_auc", "pr_auc", "brier", "lift_top_decile")


@dataclass(frozen=True)
class ModelScores:
    """One model's held-out metrics: per fold, and their mean and std (ddof=0) over folds."""

    per_fold: list[dict[str, float]]
    mean: dict[str, float]
    std: dict[str, float]

    @classmethod
    def from_folds(cls, per_fold: list[dict[str, float]]) -> ModelScores:
        """Summarise the metric dicts of each fold."""
        keys = [k for k in SUMMARY_METRICS if all(k in fold for fold in per_fold)]
        return cls(
            per_fold=per_fold,
            mean={k: float(np.mean([fold[k] for fold in per_fold])) for k in keys},
            std={k: float(np.std([fold[k] for fold in per_fold])) for k in keys},
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {"mean": self.mean, "std": self.std, "per_fold": self.per_fold}


@dataclass(frozen=True)
class ChurnEvaluation:
    """Result of `evaluate_churn_table`; `to_dict` is what `--json` prints."""

    rows: int
    positives_rate: float
    folds: int
    seed: int
    tuned: bool
    schema: TableSchema
    models: dict[str, ModelScores]
    chosen_params: list[dict[str, Any]]
    tuning: list[list[dict[str, Any]]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "rows": self.rows,
            "positives_rate": self.positives_rate,
            "folds": self.folds,
            "seed": self.seed,
            "tuned": self.tuned,
            "schema": self.schema.summary(),
            "models": {name: scores.to_dict() for name, scores in self.models.items()},
            "chosen_params": self.chosen_params,
            "tuning": self.tuning,
            "seconds": self.seconds,
        }


def evaluate_churn_table(
    df: pd.DataFrame,
    label: str,
    id_col: str | None = None,
    folds: int = 5,
    seed: int = 42,
    tune: bool = True,
    *,
    grid: list[dict[str, Any]] | None = None,
    min_count: int = DEFAULT_MIN_COUNT,
) -> ChurnEvaluation:
    """Stratified K-fold comparison of the calibrated LightGBM churn model and a logistic baseline.

    The schema (column types, category levels) is inferred once from the whole table: it uses
    no labels, and everything fitted from the data — tuning, early stopping, calibration,
    medians, scaling, the models — sees the training folds only. With `tune`, each fold picks
    its LightGBM settings from `grid` (default `churn.DEFAULT_GRID`) on a split of its training
    folds; without it every fold uses `churn.DEFAULT_PARAMS`.
    """
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    started = time.perf_counter()
    schema = infer_columns(df, label, id_col, min_count=min_count)
    y = parse_label(df[label])
    smallest = int(min(y.sum(), len(y) - y.sum()))
    if smallest < folds:
        raise ValueError(
            f"{folds}-fold cross-validation needs at least {folds} rows of each class in "
            f"{label!r}; the rarer class has {smallest}"
        )
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    lightgbm_folds: list[dict[str, float]] = []
    logistic_folds: list[dict[str, float]] = []
    chosen: list[dict[str, Any]] = []
    tuning: list[list[dict[str, Any]]] = []
    for train, test in splitter.split(np.zeros(len(y)), y):
        train_df, test_df = df.iloc[train], df.iloc[test]
        params: dict[str, Any] = {}
        if tune:
            params, table = tune_churn_params(train_df, y[train], schema, grid=grid, seed=seed)
            tuning.append(table)
        chosen.append(params)
        model = ChurnModel().fit(train_df, y[train], schema, params=params, seed=seed)
        lightgbm_folds.append(classification_metrics(y[test], model.predict_proba(test_df)))
        baseline = logistic_baseline(schema).fit(train_df, y[train])
        baseline_scores = np.asarray(baseline.predict_proba(test_df))[:, 1]
        logistic_folds.append(classification_metrics(y[test], baseline_scores))
    return ChurnEvaluation(
        rows=len(df),
        positives_rate=float(y.mean()),
        folds=folds,
        seed=seed,
        tuned=tune,
        schema=schema,
        models={
            LIGHTGBM: ModelScores.from_folds(lightgbm_folds),
            LOGISTIC: ModelScores.from_folds(logistic_folds),
        },
        chosen_params=chosen,
        tuning=tuning,
        seconds=time.perf_counter() - started,
    )
