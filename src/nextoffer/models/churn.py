"""Churn model: calibrated LightGBM on an auto-typed table, with explanations and a baseline."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.optimize import minimize
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from nextoffer.models.platt import PlattCalibration
from nextoffer.models.platt import logit as _logit
from nextoffer.models.platt import sigmoid as _sigmoid
from nextoffer.models.tabular import (
    LinearEncoding,
    TableSchema,
    encode_for_linear,
    encode_for_trees,
    fit_linear_encoding,
)

FORMAT_VERSION = 1
MODEL_FILE = "model.txt"
SCHEMA_FILE = "schema.json"
CALIBRATION_FILE = "calibration.json"
META_FILE = "meta.json"
# Share of the training rows held back for early stopping and for fitting the calibrator.
VALIDATION_FRACTION = 0.2
# Both are our keys, not LightGBM's: they drive lgb.train rather than the booster itself.
MAX_ROUNDS_KEY = "num_boost_round"
PATIENCE_KEY = "early_stopping_rounds"

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary",
    # Early stopping on log-loss rather than AUC: it is smoother on small validation splits
    # and it also watches probability quality, which the calibrator builds on.
    "metric": "binary_logloss",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_child_samples": 20,
    "feature_fraction": 0.9,
    "lambda_l2": 1.0,
    # LightGBM's default (100 rows per category group) ignores most levels of small tables.
    "min_data_per_group": 20,
    # Small tables train in well under a second; more threads only contend with the caller.
    "num_threads": 1,
    "deterministic": True,
    "verbose": -1,
    MAX_ROUNDS_KEY: 2000,
    PATIENCE_KEY: 50,
}

DEFAULT_GRID: list[dict[str, Any]] = [
    {"num_leaves": 15, "learning_rate": 0.05, "min_child_samples": 20, "feature_fraction": 0.9},
    {"num_leaves": 7, "learning_rate": 0.05, "min_child_samples": 30, "feature_fraction": 0.8},
    {"num_leaves": 31, "learning_rate": 0.05, "min_child_samples": 10, "feature_fraction": 0.8},
    {"num_leaves": 63, "learning_rate": 0.03, "min_child_samples": 5, "feature_fraction": 0.7},
    {"num_leaves": 4, "learning_rate": 0.1, "min_child_samples": 50, "feature_fraction": 1.0},
]

# Default risk bands, on calibrated churn probability over the label's horizon: below 0.2 is
# "low" (around or under typical telco base rates of 15–27 %), 0.2 to 0.4 "medium" (clearly
# above the base rate) and 0.4 or more "high" (close to a coin flip or worse: act now).
RISK_THRESHOLDS = (0.2, 0.4)


def fit_platt(raw: np.ndarray, y: np.ndarray) -> PlattCalibration:
    """Fit Platt scaling of `raw` probabilities to 0/1 outcomes `y`.

    Uses Platt's smoothed targets ((n₊+1)/(n₊+2) and 1/(n₋+2) instead of 1 and 0) so a small,
    perfectly separated validation split cannot push the slope to infinity, and keeps the
    slope ≥ 0 so calibration can never reverse the model's ranking.
    """
    x = _logit(raw)
    y = np.asarray(y, dtype=float)
    n_pos = float(y.sum())
    n_neg = float(len(y) - n_pos)
    target = np.where(y > 0.5, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = theta[0] * x + theta[1]
        # Cross-entropy written as softplus(z) - t·z, stable for large |z|.
        value = float(np.sum(np.logaddexp(0.0, z) - target * z))
        residual = _sigmoid(z) - target
        return value, np.array([float(residual @ x), float(residual.sum())])

    result = minimize(
        loss,
        x0=np.array([1.0, 0.0]),
        jac=True,
        method="L-BFGS-B",
        bounds=[(0.0, None), (None, None)],
    )
    slope, intercept = (float(v) for v in result.x)
    return PlattCalibration(slope=slope, intercept=intercept, rows=len(y))


def merged_params(params: Mapping[str, Any] | None, seed: int) -> dict[str, Any]:
    """DEFAULT_PARAMS overridden by `params`, with the seed set."""
    merged = {**DEFAULT_PARAMS, **(params or {})}
    merged["seed"] = seed
    return merged


def _check_training_data(df: pd.DataFrame, y: np.ndarray) -> np.ndarray:
    """`y` as a 0/1 int array, after checking it fits `df` and has enough of both classes."""
    labels = np.asarray(y)
    if labels.ndim != 1 or len(labels) != len(df):
        raise ValueError(f"y has shape {labels.shape}; expected ({len(df)},) to match the table")
    if not np.isin(labels, [0, 1]).all():
        raise ValueError("y must hold only 0 and 1 (see tabular.parse_label)")
    labels = labels.astype(np.int64)
    smallest = int(min(labels.sum(), len(labels) - labels.sum()))
    if smallest < 4:
        raise ValueError(
            f"need at least 4 rows of each class to train and calibrate; the rarer class has "
            f"{smallest}"
        )
    return labels


def _split(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train, validation) row positions."""
    positions = np.arange(len(y))
    train, valid = train_test_split(
        positions, test_size=VALIDATION_FRACTION, stratify=y, random_state=seed
    )
    return np.sort(train), np.sort(valid)


@dataclass(frozen=True)
class _TrainingData:
    """Encoded features and 0/1 labels, with stratified (train, validation) row positions."""

    features: pd.DataFrame
    labels: np.ndarray
    train: np.ndarray
    valid: np.ndarray

    @classmethod
    def prepare(cls, df: pd.DataFrame, y: np.ndarray, schema: TableSchema, seed: int) -> Self:
        """Check `y` against `df`, encode `df` and split the rows."""
        labels = _check_training_data(df, y)
        features = _encode(df, schema)
        train, valid = _split(labels, seed)
        return cls(features, labels, train, valid)

    def rows(self, positions: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
        """Features and labels of the rows at `positions`."""
        return self.features.iloc[positions], self.labels[positions]


def _train_booster(
    data: _TrainingData, schema: TableSchema, params: Mapping[str, Any]
) -> lgb.Booster:
    """LightGBM binary model with early stopping on the validation rows."""
    booster_params = {k: v for k, v in params.items() if k not in (MAX_ROUNDS_KEY, PATIENCE_KEY)}
    positions = {name: index for index, name in enumerate(schema.features)}
    categorical = [f"f{positions[c.name]}" for c in schema.categorical]
    x_train, y_train = data.rows(data.train)
    train_set = lgb.Dataset(
        x_train, label=y_train, categorical_feature=categorical, free_raw_data=False
    )
    x_valid, y_valid = data.rows(data.valid)
    valid_set = lgb.Dataset(x_valid, label=y_valid, reference=train_set)
    return lgb.train(
        booster_params,
        train_set,
        num_boost_round=int(params[MAX_ROUNDS_KEY]),
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(int(params[PATIENCE_KEY]), verbose=False)],
    )


def _plain(value: object) -> object:
    """A table cell as a JSON-friendly Python value (numpy scalars unwrapped, blanks → None)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


class ChurnModel:
    """Calibrated LightGBM churn classifier for a table typed by `infer_columns`.

    `fit` holds back a stratified 20 % of the training rows: LightGBM stops early on them and
    the Platt calibrator is fitted on the stopped model's predictions for them. The booster is
    not refitted on all rows afterwards, because the calibrator describes this booster.
    """

    def __init__(self) -> None:
        self._booster: lgb.Booster | None = None
        self._schema: TableSchema | None = None
        self._calibration: PlattCalibration | None = None
        self.params: dict[str, Any] = {}
        self.best_iteration = 0
        self.info: dict[str, Any] = {}

    @property
    def booster(self) -> lgb.Booster:
        """The fitted LightGBM booster."""
        if self._booster is None:
            raise RuntimeError("ChurnModel is not fitted")
        return self._booster

    @property
    def schema(self) -> TableSchema:
        """The table schema the model was fitted with."""
        if self._schema is None:
            raise RuntimeError("ChurnModel is not fitted")
        return self._schema

    @property
    def calibration(self) -> PlattCalibration:
        """The fitted calibrator."""
        if self._calibration is None:
            raise RuntimeError("ChurnModel is not fitted")
        return self._calibration

    def fit(
        self,
        df: pd.DataFrame,
        y: np.ndarray,
        schema: TableSchema,
        params: dict[str, Any] | None = None,
        seed: int = 42,
    ) -> Self:
        """Train on `df` (raw table) and 0/1 labels `y`; returns self."""
        data = _TrainingData.prepare(df, y, schema, seed)
        self.params = merged_params(params, seed)
        booster = _train_booster(data, schema, self.params)
        self._booster = booster
        self._schema = schema
        self.best_iteration = max(int(booster.best_iteration), 1)
        x_valid, y_valid = data.rows(data.valid)
        raw_valid = self._raw(x_valid)
        self._calibration = fit_platt(raw_valid, y_valid)
        self.info = {
            "train_rows": len(data.train),
            "validation_rows": len(data.valid),
            "validation_positives": int(y_valid.sum()),
            "validation_auc_raw": float(roc_auc_score(y_valid, raw_valid)),
        }
        return self

    def _raw(self, features: pd.DataFrame) -> np.ndarray:
        """Uncalibrated probabilities for already encoded features."""
        raw = self.booster.predict(features, num_iteration=self.best_iteration)
        return np.asarray(raw, dtype=float)

    def predict_raw(self, df: pd.DataFrame) -> np.ndarray:
        """Uncalibrated LightGBM churn probabilities for the rows of `df`."""
        return self._raw(_encode(df, self.schema))

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        """Calibrated churn probabilities for the rows of `df`."""
        return self.calibration.apply(self.predict_raw(df))

    def explain(self, df: pd.DataFrame, top: int = 3) -> list[list[dict[str, Any]]]:
        """Per row, up to `top` features pushing churn risk up the most, largest first.

        Each is {"feature", "value" (the row's raw cell), "contribution" (SHAP-style, in
        uncalibrated log-odds)}. Features that lower the risk are never listed, so a row may
        have fewer than `top` entries.
        """
        features = _encode(df, self.schema)
        contrib = np.asarray(
            self.booster.predict(features, num_iteration=self.best_iteration, pred_contrib=True),
            dtype=float,
        )
        names = self.schema.features
        # The last column is the bias (expected log-odds), not a feature.
        per_feature = contrib[:, : len(names)]
        explanations: list[list[dict[str, Any]]] = []
        for row in range(len(features)):
            order = np.argsort(-per_feature[row], kind="stable")[:top]
            explanations.append(
                [
                    {
                        "feature": names[j],
                        "value": _plain(df[names[j]].iloc[row]),
                        "contribution": float(per_feature[row, j]),
                    }
                    for j in order
                    if per_feature[row, j] > 0
                ]
            )
        return explanations

    def importance(self) -> dict[str, float]:
        """Total split gain per feature, normalised to sum 1, largest first (all 0 if no split)."""
        gain = np.asarray(
            self.booster.feature_importance(importance_type="gain", iteration=self.best_iteration),
            dtype=float,
        )
        total = float(gain.sum())
        shares = gain / total if total > 0 else gain
        pairs = sorted(
            zip(self.schema.features, shares.tolist(), strict=True), key=lambda kv: -kv[1]
        )
        return {name: float(share) for name, share in pairs}

    def save(self, directory: Path) -> None:
        """Write the model to `directory` (created if missing) as text and JSON files only."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(directory / MODEL_FILE), num_iteration=self.best_iteration)
        _write_json(directory / SCHEMA_FILE, self.schema.to_dict())
        _write_json(directory / CALIBRATION_FILE, self.calibration.to_dict())
        meta = {
            "format_version": FORMAT_VERSION,
            "kind": "churn-lightgbm",
            "params": self.params,
            "best_iteration": self.best_iteration,
            "feature_names": list(self.schema.features),
            "importance": self.importance(),
            "info": self.info,
        }
        _write_json(directory / META_FILE, meta)

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Read a model written by `save`."""
        directory = Path(directory)
        meta = json.loads((directory / META_FILE).read_text())
        if meta.get("kind") != "churn-lightgbm":
            raise ValueError(f"{directory} does not hold a churn model")
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{directory}: unsupported model format {meta.get('format_version')}")
        model = cls()
        model._schema = TableSchema.from_dict(json.loads((directory / SCHEMA_FILE).read_text()))
        model._calibration = PlattCalibration.from_dict(
            json.loads((directory / CALIBRATION_FILE).read_text())
        )
        model._booster = lgb.Booster(model_file=str(directory / MODEL_FILE))
        model.params = dict(meta["params"])
        model.best_iteration = int(meta["best_iteration"])
        model.info = dict(meta.get("info", {}))
        if list(model._booster.feature_name()) != _lightgbm_names(model.schema.features):
            raise ValueError(f"{directory}: model features do not match schema.json")
        return model


def _lightgbm_names(names: Sequence[str]) -> list[str]:
    """Positional names for LightGBM ("f0", "f1", …).

    LightGBM rewrites spaces and rejects JSON punctuation in feature names, and customer tables
    have both ("Total day minutes", "Charges [EUR]"); the schema keeps the real names.
    """
    return [f"f{index}" for index in range(len(names))]


def _encode(df: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    """Tree encoding of `df` with the positional column names the booster knows."""
    features = encode_for_trees(df, schema)
    return features.set_axis(_lightgbm_names(schema.features), axis=1)


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Pretty, sorted JSON so saved models diff cleanly."""
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def tune_churn_params(
    df: pd.DataFrame,
    y: np.ndarray,
    schema: TableSchema,
    grid: list[dict[str, Any]] | None = None,
    seed: int = 42,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Pick LightGBM settings by validation ROC-AUC; returns (best settings, results table).

    Pass training rows only: the validation split is carved from `df` (stratified, the same
    20 % that `ChurnModel.fit` with this seed holds back). Each setting stops early on that
    split and is scored there, so the scores are slightly optimistic, equally for every
    setting. Ties go to the earlier setting in `grid`. The table has one row per setting:
    {"params", "validation_auc", "best_iteration"}.
    """
    settings = DEFAULT_GRID if grid is None else grid
    if not settings:
        raise ValueError("the tuning grid is empty")
    data = _TrainingData.prepare(df, y, schema, seed)
    x_valid, y_valid = data.rows(data.valid)
    table: list[dict[str, Any]] = []
    for setting in settings:
        booster = _train_booster(data, schema, merged_params(setting, seed))
        best = max(int(booster.best_iteration), 1)
        scores = np.asarray(booster.predict(x_valid, num_iteration=best), dtype=float)
        table.append(
            {
                "params": dict(setting),
                "validation_auc": float(roc_auc_score(y_valid, scores)),
                "best_iteration": best,
            }
        )
    winner = max(range(len(table)), key=lambda i: (table[i]["validation_auc"], -i))
    return dict(settings[winner]), table


class LinearTableEncoder(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """sklearn step around `encode_for_linear`: one-hot, median imputation, standardisation."""

    def __init__(self, schema: TableSchema) -> None:
        self.schema = schema

    def fit(self, x: pd.DataFrame, y: object = None) -> Self:
        """Fit medians, means and scales on the training table."""
        self.encoding_: LinearEncoding = fit_linear_encoding(x, self.schema)
        return self

    def transform(self, x: pd.DataFrame) -> np.ndarray:
        """Dense float matrix for the rows of `x`."""
        matrix, _ = encode_for_linear(x, self.schema, self.encoding_)
        return matrix.to_numpy(dtype=float)


def logistic_baseline(schema: TableSchema) -> Pipeline:
    """Unfitted one-hot + impute + scale + LogisticRegression pipeline on raw tables."""
    return Pipeline(
        [
            ("encode", LinearTableEncoder(schema)),
            ("model", LogisticRegression(max_iter=1000)),
        ]
    )


def risk_band(p: np.ndarray, thresholds: tuple[float, float] = RISK_THRESHOLDS) -> np.ndarray:
    """Band calibrated churn probabilities `p` into "low", "medium" and "high".

    `thresholds` = (low_below, high_from): p < low_below is "low", p ≥ high_from is "high",
    the rest "medium". They are probabilities of churning within the label's horizon, so they
    only make sense on `predict_proba` output (calibrated), not on raw scores; see
    RISK_THRESHOLDS for what the defaults stand for.
    """
    low_below, high_from = thresholds
    if not 0.0 <= low_below <= high_from <= 1.0:
        raise ValueError(f"thresholds must satisfy 0 ≤ low ≤ high ≤ 1, got {thresholds}")
    probabilities = np.asarray(p, dtype=float)
    return np.where(
        probabilities >= high_from, "high", np.where(probabilities < low_below, "low", "medium")
    )
