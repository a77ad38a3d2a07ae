"""Uplift models on LightGBM: the change in an outcome that a treatment (an offer) causes.

Every model takes a raw table typed by `tabular.infer_columns`, 0/1 treatment flags and
outcomes (0/1 or numeric), and predicts treated − control per row. They are meant for
randomised data: the treated share of the training rows is taken as every row's propensity.
Saved models are LightGBM text files plus JSON: loading one never executes code.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import lightgbm as lgb
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from nextoffer.models.tabular import TableSchema, encode_for_trees

FORMAT_VERSION = 1
SCHEMA_FILE = "schema.json"
META_FILE = "meta.json"
ROUNDS_KEY = "num_boost_round"  # ours, not LightGBM's: it drives lgb.train
Outcome = Literal["auto", "binary", "continuous"]
FloatArray = NDArray[np.float64]

# Uplift is a difference of two noisy responses, far weaker than either, so the defaults are
# small, heavily regularised trees (measured on a Hillstrom-shaped simulation: bench/uplift.py
# and docs/evaluation.md). Fixed rounds rather than early stopping: a validation split would
# cost rows that a weak signal needs, and its stopping point is noise.
DEFAULT_PARAMS: dict[str, Any] = {
    "learning_rate": 0.03,
    "num_leaves": 8,
    "max_depth": 3,
    # "auto": 100, or a fifth of the booster's training rows when it has fewer than 500 (at
    # least 10), so that small tables can still split.
    "min_child_samples": "auto",
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 10.0,
    # LightGBM's default (100 rows per category group) ignores most levels of small tables.
    "min_data_per_group": 50,
    "cat_smooth": 20.0,
    "num_threads": 1,
    "deterministic": True,
    "verbose": -1,
    ROUNDS_KEY: 200,
}


def _flags(treatment: ArrayLike, rows: int) -> FloatArray:
    """Treatment as 0.0/1.0, checked against the number of rows and for both arms."""
    t = np.asarray(treatment, dtype=float).ravel()
    if len(t) != rows:
        raise ValueError(f"treatment has {len(t)} values for {rows} rows")
    if not np.isin(t, [0.0, 1.0]).all():
        raise ValueError("treatment must hold only 0 (control) and 1 (treated)")
    for arm, name in ((1.0, "treated"), (0.0, "control")):
        if int((t == arm).sum()) < 2:
            raise ValueError(f"the {name} arm needs at least 2 rows to fit an uplift model")
    return t


def _outcomes(y: ArrayLike, rows: int) -> FloatArray:
    """Outcomes as floats, checked against the number of rows and for missing values."""
    values = np.asarray(y, dtype=float).ravel()
    if len(values) != rows:
        raise ValueError(f"y has {len(values)} values for {rows} rows")
    if np.isnan(values).any():
        raise ValueError("y must not contain missing values")
    return values


def _is_binary(y: FloatArray) -> bool:
    """True when every outcome is 0 or 1."""
    return bool(np.isin(y, [0.0, 1.0]).all())


class UpliftModel(ABC):
    """LightGBM-based uplift model: `fit(X, treatment, y)`, `predict_uplift(X)`, save, load.

    `outcome="auto"` fits classifiers when every training outcome is 0 or 1 and regressors
    otherwise; pass "binary" or "continuous" to fix it (cross-validation does, so that every
    fold models the same thing). `params` override `DEFAULT_PARAMS` for every booster.
    """

    name: ClassVar[str]
    # Roles of the boosters the model fits, in the order they are saved.
    roles: ClassVar[tuple[str, ...]]

    def __init__(
        self,
        schema: TableSchema,
        params: Mapping[str, Any] | None = None,
        seed: int = 42,
        outcome: Outcome = "auto",
    ) -> None:
        self.schema = schema
        self.params: dict[str, Any] = {**DEFAULT_PARAMS, **(params or {})}
        self.seed = seed
        self.outcome: Outcome = outcome
        self.binary = outcome == "binary"
        self.propensity = 0.5
        self.boosters: dict[str, lgb.Booster] = {}

    # --- fitting ------------------------------------------------------------------------

    def fit(self, x: pd.DataFrame, treatment: ArrayLike, y: ArrayLike) -> Self:
        """Learn from the raw table `x`, 0/1 `treatment` flags and outcomes `y`; returns self."""
        t = _flags(treatment, len(x))
        values = _outcomes(y, len(x))
        if self.outcome == "auto":
            self.binary = _is_binary(values)
        elif self.binary and not _is_binary(values):
            raise ValueError("outcome='binary' but y holds values other than 0 and 1")
        self.propensity = float(t.mean())
        self.boosters = {}
        self._fit(self._encode(x), t, values)
        return self

    @abstractmethod
    def _fit(self, features: pd.DataFrame, t: FloatArray, y: FloatArray) -> None:
        """Fit the boosters on encoded features (sets `self.boosters`)."""

    @abstractmethod
    def _predict(self, features: pd.DataFrame) -> FloatArray:
        """Predicted uplift for encoded features."""

    def predict_uplift(self, x: pd.DataFrame) -> FloatArray:
        """Predicted treated − control outcome for each row of the raw table `x`."""
        if set(self.boosters) != set(self.roles):
            raise RuntimeError(f"{type(self).__name__} is not fitted")
        return self._predict(self._encode(x))

    def _encode(self, x: pd.DataFrame) -> pd.DataFrame:
        """Tree encoding of `x` with positional names (LightGBM rejects some real names)."""
        features = encode_for_trees(x, self.schema)
        return features.set_axis([f"f{i}" for i in range(features.shape[1])], axis=1)

    def _train(
        self,
        role: str,
        features: pd.DataFrame,
        target: FloatArray,
        *,
        classify: bool,
    ) -> None:
        """Fit one booster (a classifier or an L2 regressor) and keep it under `role`."""
        params = {k: v for k, v in self.params.items() if k != ROUNDS_KEY}
        params["objective"] = "binary" if classify else "regression"
        if params["min_child_samples"] == "auto":
            # Measured: 100-row leaves beat smaller ones even at 2,000 rows (bench/uplift.py).
            params["min_child_samples"] = int(np.clip(len(target) // 5, 10, 100))
        # Each role gets its own seed so that bagging differs between the boosters.
        params["seed"] = self.seed + self.roles.index(role)
        levels = self.schema.levels
        categorical = [f"f{i}" for i, name in enumerate(self.schema.features) if name in levels]
        data = lgb.Dataset(features, label=target, categorical_feature=categorical or "auto")
        rounds = int(self.params[ROUNDS_KEY])
        self.boosters[role] = lgb.train(params, data, num_boost_round=rounds)

    def _response(self, role: str, features: pd.DataFrame) -> FloatArray:
        """Prediction of one booster: a probability for classifiers, a value for regressors."""
        return np.asarray(self.boosters[role].predict(features), dtype=float)

    # --- persistence --------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        """Write the model to `directory` (created if missing): LightGBM text and JSON only."""
        if set(self.boosters) != set(self.roles):
            raise RuntimeError(f"{type(self).__name__} is not fitted")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for role in self.roles:
            self.boosters[role].save_model(str(directory / f"{role}.txt"))
        _write_json(directory / SCHEMA_FILE, self.schema.to_dict())
        meta = {
            "format_version": FORMAT_VERSION,
            "kind": "uplift-lightgbm",
            "model": self.name,
            "params": self.params,
            "seed": self.seed,
            "outcome": self.outcome,
            "binary": self.binary,
            "propensity": self.propensity,
            "roles": list(self.roles),
        }
        _write_json(directory / META_FILE, meta)

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Read a model of this class written by `save`."""
        directory = Path(directory)
        meta = _read_meta(directory)
        if meta["model"] != cls.name:
            raise ValueError(f"{directory} holds a {meta['model']!r} model, not {cls.name!r}")
        schema = TableSchema.from_dict(json.loads((directory / SCHEMA_FILE).read_text()))
        model = cls(schema, params=meta["params"], seed=int(meta["seed"]), outcome=meta["outcome"])
        model.binary = bool(meta["binary"])
        model.propensity = float(meta["propensity"])
        model.boosters = {
            role: lgb.Booster(model_file=str(directory / f"{role}.txt")) for role in cls.roles
        }
        return model


class TwoModel(UpliftModel):
    """T-learner: one model per arm; uplift = treated model − control model."""

    name = "two_model"
    roles = ("treated", "control")

    def _fit(self, features: pd.DataFrame, t: FloatArray, y: FloatArray) -> None:
        for role, arm in (("treated", 1.0), ("control", 0.0)):
            rows = t == arm
            self._train(role, features[rows], y[rows], classify=self.binary)

    def _predict(self, features: pd.DataFrame) -> FloatArray:
        return self._response("treated", features) - self._response("control", features)


class SoloModel(UpliftModel):
    """S-learner: one model with the treatment flag as a feature; uplift = f(x, 1) − f(x, 0)."""

    name = "solo_model"
    roles = ("model",)

    @staticmethod
    def _with_flag(features: pd.DataFrame, flag: FloatArray | float) -> pd.DataFrame:
        """`features` plus the treatment flag as the last column."""
        return features.assign(**{f"f{features.shape[1]}": flag})

    def _fit(self, features: pd.DataFrame, t: FloatArray, y: FloatArray) -> None:
        self._train("model", self._with_flag(features, t), y, classify=self.binary)

    def _predict(self, features: pd.DataFrame) -> FloatArray:
        treated = self._response("model", self._with_flag(features, 1.0))
        return treated - self._response("model", self._with_flag(features, 0.0))


class XLearner(UpliftModel):
    """X-learner: arm models, then effect models on each arm's imputed individual effects.

    Treated rows get y − μ₀(x), control rows μ₁(x) − y; a regressor per arm learns those, and
    the uplift is p · τ₀(x) + (1 − p) · τ₁(x) with p the treated share: it leans on the
    effects imputed with the larger arm's response model, the better estimated one.
    """

    name = "x_learner"
    roles = ("treated", "control", "effect_treated", "effect_control")

    def _fit(self, features: pd.DataFrame, t: FloatArray, y: FloatArray) -> None:
        treated, control = t == 1.0, t == 0.0
        self._train("treated", features[treated], y[treated], classify=self.binary)
        self._train("control", features[control], y[control], classify=self.binary)
        imputed_treated = y[treated] - self._response("control", features[treated])
        imputed_control = self._response("treated", features[control]) - y[control]
        self._train("effect_treated", features[treated], imputed_treated, classify=False)
        self._train("effect_control", features[control], imputed_control, classify=False)

    def _predict(self, features: pd.DataFrame) -> FloatArray:
        p = self.propensity
        return p * self._response("effect_control", features) + (1.0 - p) * self._response(
            "effect_treated", features
        )


# A propensity-weighted transformed-outcome regression was measured too and never beat the
# two-model (docs/evaluation.md), so it is not offered.
UPLIFT_MODELS: dict[str, type[UpliftModel]] = {
    cls.name: cls for cls in (TwoModel, SoloModel, XLearner)
}


def _read_meta(directory: Path) -> dict[str, Any]:
    """meta.json of a saved uplift model, checked for kind and format version."""
    meta: dict[str, Any] = json.loads((directory / META_FILE).read_text())
    if meta.get("kind") != "uplift-lightgbm":
        raise ValueError(f"{directory} does not hold an uplift model")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{directory}: unsupported model format {meta.get('format_version')}")
    return meta


def load_uplift_model(directory: Path) -> UpliftModel:
    """Read any uplift model written by `UpliftModel.save`."""
    name = str(_read_meta(Path(directory))["model"])
    if name not in UPLIFT_MODELS:
        raise ValueError(f"{directory}: unknown uplift model {name!r}")
    return UPLIFT_MODELS[name].load(directory)


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Pretty, sorted JSON so saved models diff cleanly."""
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
