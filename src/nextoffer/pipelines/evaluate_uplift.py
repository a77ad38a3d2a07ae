"""`nextoffer evaluate uplift`: treatment effect and cross-validated uplift models on any table.

Protocol (docs/evaluation.md, "evaluate uplift"): rows whose treatment is neither the treated
nor the control value are dropped and counted; the average treatment effect and its 95 %
interval come from all remaining rows; the rows are split into K folds stratified on
treatment × outcome, every uplift model is fitted on K − 1 folds and predicts the held-out
fold, and the Qini AUC, uplift AUC and uplift at 30 % (by group) are computed once on the
pooled out-of-fold predictions, as is a seeded random ranking.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from nextoffer.domain.errors import InputError
from nextoffer.evaluation.uplift import (
    TreatmentEffect,
    average_treatment_effect,
    qini_auc_score,
    uplift_at_k,
    uplift_auc_score,
)
from nextoffer.models.tabular import TableSchema, infer_columns, parse_label
from nextoffer.models.uplift import UPLIFT_MODELS
from nextoffer.pipelines.base import Say, silent

RANDOM = "random"
TOP_SHARE = 0.3
# Second word of the random ranking's seed, so that it never repeats a stream drawn from
# the bare seed (a generator that made the data with that seed, say).
_RANDOM_STREAM = 0x0F1F7
OutcomeKind = Literal["binary", "continuous"]


@dataclass(frozen=True)
class UpliftEvaluationConfig:
    """What to evaluate: the columns of the table and the cross-validation."""

    treatment_col: str
    treated: str
    outcome: str
    control: str | None = None
    ignore_cols: tuple[str, ...] = ()
    features: tuple[str, ...] | None = None
    id_col: str | None = None
    folds: int = 5
    seed: int = 42
    models: tuple[str, ...] = tuple(UPLIFT_MODELS)


@dataclass(frozen=True)
class UpliftScores:
    """One ranking's scores on the pooled out-of-fold predictions."""

    qini_auc: float
    uplift_auc: float
    uplift_at_30: float

    @classmethod
    def of(cls, y: np.ndarray, uplift: np.ndarray, treatment: np.ndarray) -> UpliftScores:
        """Score the predicted `uplift` of every row against outcomes and treatment flags."""
        return cls(
            qini_auc=qini_auc_score(y, uplift, treatment),
            uplift_auc=uplift_auc_score(y, uplift, treatment),
            uplift_at_30=uplift_at_k(y, uplift, treatment, k=TOP_SHARE, strategy="by_group"),
        )

    def to_dict(self) -> dict[str, float]:
        """JSON-serialisable form."""
        return {
            "qini_auc": self.qini_auc,
            "uplift_auc": self.uplift_auc,
            "uplift_at_30": self.uplift_at_30,
        }


@dataclass(frozen=True)
class Arms:
    """The rows kept, their 0/1 treatment flags, and the values that name each arm."""

    rows: np.ndarray
    treatment: np.ndarray
    treated_value: str
    control_value: str
    dropped: int


@dataclass(frozen=True)
class UpliftEvaluation:
    """Result of `evaluate_uplift`; `to_dict` is what `--json` prints.

    `treatment`, `outcome` and `predictions` (out-of-fold uplift per model, "random"
    included) are row-aligned with the rows kept, so every score can be recomputed.
    """

    arms: Arms
    outcome_column: str
    outcome_kind: OutcomeKind
    outcome: np.ndarray
    ate: TreatmentEffect
    schema: TableSchema
    folds: int
    seed: int
    predictions: dict[str, np.ndarray]
    scores: dict[str, UpliftScores]
    seconds: float

    @property
    def treatment(self) -> np.ndarray:
        """0/1 treatment flags of the rows kept."""
        return self.arms.treatment

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "ate": {"value": self.ate.value, "ci95": [self.ate.ci_low, self.ate.ci_high]},
            "models": {name: scores.to_dict() for name, scores in self.scores.items()},
            "rows": len(self.outcome),
            "dropped_rows": self.arms.dropped,
            "treated": {
                "value": self.arms.treated_value,
                "rows": self.ate.treated_rows,
                "mean": self.ate.treated_mean,
            },
            "control": {
                "value": self.arms.control_value,
                "rows": self.ate.control_rows,
                "mean": self.ate.control_mean,
            },
            "outcome": {
                "column": self.outcome_column,
                "kind": self.outcome_kind,
                "interval": self.ate.method,
            },
            "folds": self.folds,
            "seed": self.seed,
            "schema": self.schema.summary(),
            "seconds": self.seconds,
        }


def _require(table: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    """InputError naming the first of `columns` that the table lacks."""
    for column in columns:
        if column not in table.columns:
            found = ", ".join(str(c) for c in table.columns)
            raise InputError(f"no {what} column {column!r}; found {found}")


def _text(series: pd.Series) -> pd.Series:
    """Cells as stripped strings, blanks as ""."""
    return series.astype("string").fillna("").str.strip()


def split_arms(table: pd.DataFrame, config: UpliftEvaluationConfig) -> Arms:
    """Rows of the treated and control arms; without a control value there must be two."""
    values = _text(table[config.treatment_col])
    treated, column = config.treated.strip(), config.treatment_col
    found = sorted(set(values))
    shown = ", ".join(repr(v) if v else "<blank>" for v in found[:10])
    if treated not in found:
        raise InputError(f"--treated {treated!r} is not a value of {column!r}; found {shown}")
    if config.control is None:
        if len(found) != 2:
            raise InputError(
                f"{column!r} has {len(found)} values ({shown}); without --control it must "
                f"have exactly two"
            )
        control = next(v for v in found if v != treated)
    else:
        control = config.control.strip()
        if control == treated:
            raise InputError("--control must differ from --treated")
        if control not in found:
            raise InputError(f"--control {control!r} is not a value of {column!r}; found {shown}")
    kept = values.isin([treated, control]).to_numpy()
    flags = (values[kept] == treated).to_numpy(dtype=np.int64)
    return Arms(
        rows=np.flatnonzero(kept),
        treatment=flags,
        treated_value=treated,
        control_value=control,
        dropped=int((~kept).sum()),
    )


def parse_outcome(series: pd.Series) -> tuple[np.ndarray, OutcomeKind]:
    """Outcomes as floats: 0/1 (from 1/0, yes/no, true/false) or any numbers."""
    try:
        return parse_label(series).astype(float), "binary"
    except ValueError:
        pass
    text = _text(series)
    numbers = pd.to_numeric(text.mask(text == ""), errors="coerce").to_numpy(dtype=float)
    bad = np.isnan(numbers)
    if bad.any():
        shown = sorted({repr(v) if v else "<blank>" for v in text[bad]})
        more = f" and {len(shown) - 5} more" if len(shown) > 5 else ""
        raise InputError(
            f"outcome {series.name!r} must be 0/1, yes/no, true/false or a number; "
            f"{int(bad.sum())} rows are not: {', '.join(shown[:5])}{more}"
        )
    # "1.0"/"0.0" cells are still a 0/1 outcome.
    return numbers, "binary" if np.isin(numbers, [0.0, 1.0]).all() else "continuous"


def _feature_table(table: pd.DataFrame, config: UpliftEvaluationConfig) -> pd.DataFrame:
    """The candidate feature columns plus the outcome and the id column, if any."""
    reserved = {config.treatment_col, config.outcome, config.id_col}
    if config.features is not None:
        _require(table, config.features, "feature")
        clash = [c for c in config.features if c in reserved]
        if clash:
            raise InputError(f"--features cannot include {clash[0]!r}: it is not a feature")
        candidates = list(config.features)
    else:
        skipped = reserved | set(config.ignore_cols)
        candidates = [str(c) for c in table.columns if c not in skipped]
    extra = [config.id_col] if config.id_col is not None else []
    return table[[*candidates, config.outcome, *extra]]


def _strata(treatment: np.ndarray, y: np.ndarray, kind: OutcomeKind) -> np.ndarray:
    """Fold strata: treatment × outcome (numeric outcomes: above their median or not)."""
    high = y if kind == "binary" else (y > np.median(y)).astype(float)
    strata: np.ndarray = 2 * treatment + high.astype(np.int64)
    return strata


def _check_strata(strata: np.ndarray, folds: int, kind: OutcomeKind) -> None:
    """InputError unless every arm × outcome group can fill each fold."""
    labels = {0: "control, low", 1: "control, high", 2: "treated, low", 3: "treated, high"}
    if kind == "binary":
        labels = {0: "control, 0", 1: "control, 1", 2: "treated, 0", 3: "treated, 1"}
    counts = np.bincount(strata, minlength=4)
    wanted = range(4) if kind == "binary" else [s for s in range(4) if counts[s] > 0]
    for stratum in wanted:
        if counts[stratum] < folds:
            raise InputError(
                f"{folds}-fold cross-validation needs at least {folds} rows of each arm × "
                f"outcome; ({labels[stratum]}) has {counts[stratum]}"
            )


def evaluate_uplift(
    table: pd.DataFrame, config: UpliftEvaluationConfig, progress: Say = silent
) -> UpliftEvaluation:
    """Average treatment effect, then out-of-fold uplift scores for random and every model."""
    started = time.perf_counter()
    if config.folds < 2:
        raise InputError("--folds must be at least 2")
    unknown = [m for m in config.models if m not in UPLIFT_MODELS]
    if unknown:
        raise InputError(f"unknown uplift model {unknown[0]!r}; choose from {list(UPLIFT_MODELS)}")
    _require(table, (config.treatment_col,), "treatment")
    _require(table, (config.outcome,), "outcome")
    if config.id_col is not None:
        _require(table, (config.id_col,), "id")
    _require(table, config.ignore_cols, "ignored")
    if config.treatment_col == config.outcome:
        raise InputError("the treatment and outcome columns must differ")
    arms = split_arms(table, config)
    kept = table.iloc[arms.rows].reset_index(drop=True)
    y, kind = parse_outcome(kept[config.outcome])
    if np.unique(y).size < 2:
        raise InputError(f"outcome {config.outcome!r} has one value: nothing to compare")
    t = arms.treatment
    strata = _strata(t, y, kind)
    _check_strata(strata, config.folds, kind)
    ate = average_treatment_effect(y, t)
    features = _feature_table(kept, config)
    schema = infer_columns(features, config.outcome, config.id_col)
    if not schema.features:
        raise InputError("no usable feature columns are left (see --features, --ignore-cols)")
    rng = np.random.default_rng([config.seed, _RANDOM_STREAM])
    predictions = {RANDOM: rng.random(len(y))}
    splitter = StratifiedKFold(n_splits=config.folds, shuffle=True, random_state=config.seed)
    for name in config.models:
        out_of_fold = np.zeros(len(y))
        for fold, (train, test) in enumerate(splitter.split(np.zeros(len(y)), strata), start=1):
            progress(f"{name}: fold {fold}/{config.folds}")
            model = UPLIFT_MODELS[name](schema, seed=config.seed, outcome=kind)
            model.fit(features.iloc[train], t[train], y[train])
            out_of_fold[test] = model.predict_uplift(features.iloc[test])
        predictions[name] = out_of_fold
    scores = {name: UpliftScores.of(y, scored, t) for name, scored in predictions.items()}
    return UpliftEvaluation(
        arms=arms,
        outcome_column=config.outcome,
        outcome_kind=kind,
        outcome=y,
        ate=ate,
        schema=schema,
        folds=config.folds,
        seed=config.seed,
        predictions=predictions,
        scores=scores,
        seconds=time.perf_counter() - started,
    )
