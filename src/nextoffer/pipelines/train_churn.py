"""Train and evaluate the churn model on held-out customers, check drift, refit on all labels.

Features are measured at the label date (`churn_labels.as_of`) with data strictly before
it, so nothing from the churn window leaks in. A stratified share of labelled customers is
held out for the reported metrics; settings are chosen on a validation split carved from
the rest. The registered model is refitted on every labelled customer with those settings.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from nextoffer.domain.errors import NothingToLearnError
from nextoffer.evaluation.drift import DriftReport, drift_report
from nextoffer.evaluation.metrics import classification_metrics
from nextoffer.features.attributes import feature_attributes
from nextoffer.features.builder import MODEL_FEATURES, build_features
from nextoffer.features.training import churn_labels, current_features
from nextoffer.models.churn import DEFAULT_GRID, ChurnModel, logistic_baseline, tune_churn_params
from nextoffer.models.leakage import MAX_SINGLE_AUC, single_feature_auc
from nextoffer.models.tabular import TableSchema, infer_columns
from nextoffer.pipelines.base import Say, TrainingConfig, silent
from nextoffer.scoring.churn import churn_frame
from nextoffer.store import Engine
from nextoffer.store.reads.attributes import attribute_frame, attribute_schema

log = logging.getLogger(__name__)

LABEL = "churned"
# What the churn model sees: every customer feature. `segment_id` is left out: it is
# itself a clustering of these columns, refitted each run.
CHURN_FEATURES = MODEL_FEATURES


@dataclass(frozen=True)
class ChurnTrainingConfig(TrainingConfig):
    """Knobs of one churn training run."""

    test_fraction: float = 0.25
    drift_threshold: float = 0.2
    # Pinned LightGBM settings skip the search (operators pinning, or a deliberately weak
    # challenger in tests).
    params: Mapping[str, Any] | None = None


@dataclass
class ChurnTraining:
    """What a churn training run produced."""

    model: ChurnModel
    metrics: dict[str, float]
    baseline: dict[str, float]
    chosen: dict[str, Any]
    tuning: list[dict[str, Any]]
    drift: DriftReport
    label_as_of: str
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    dropped: list[str] = field(default_factory=list)
    test_frame: pd.DataFrame | None = None
    test_labels: np.ndarray | None = None

    def score(self, other: ChurnModel) -> dict[str, float]:
        """`other`'s test metrics on this run's held-out customers (e.g. the champion's).

        Columns `other` needs that this data lacks are missing values for it.
        """
        assert self.test_frame is not None and self.test_labels is not None
        frame = self.test_frame.copy()
        for column in other.schema.features:
            if column not in frame.columns:
                frame[column] = np.nan
        return classification_metrics(self.test_labels, other.predict_proba(frame))


def train_churn(
    engine: Engine, config: ChurnTrainingConfig, progress: Say = silent
) -> ChurnTraining:
    """The whole churn run: tune on train, report on held-out customers, refit on all."""
    started = time.perf_counter()
    with engine.connect() as conn:
        label_as_of, labels = churn_labels(conn)
        if label_as_of is None or labels.empty:
            raise NothingToLearnError("no churn labels: load churn_labels before training")
        progress(f"churn features as of the label date {label_as_of:%Y-%m-%d}")
        at_label = build_features(conn, label_as_of)
        latest = current_features(conn)
        numeric, categorical = feature_attributes(attribute_schema(conn))
        # Attributes are today's values (no history is kept): joined to the label-date row.
        at_label = at_label.merge(attribute_frame(conn), on="customer_id", how="left")
    attributes = [c for c in (*numeric, *categorical) if c in at_label.columns]
    data = at_label.merge(labels, on="customer_id", how="inner")
    if data[LABEL].nunique() < 2:
        raise NothingToLearnError("churn labels have a single class: nothing to learn")
    frame, y = churn_frame(data, attributes), data[LABEL].to_numpy(dtype=np.int64)
    frame, dropped = _without_leaks(frame, y)
    schema = _schema(frame)
    threads: dict[str, Any] = {"num_threads": config.threads} if config.threads else {}

    train_rows, test_rows = train_test_split(
        np.arange(len(frame)),
        test_size=config.test_fraction,
        stratify=y,
        random_state=config.seed,
    )
    train_x, train_y = frame.iloc[train_rows], y[train_rows]
    # Churners are the minority (15-25 %): weighting them up to balance makes the trees split
    # on what separates them. It skews the raw probabilities upwards; the Platt calibrator
    # fitted on held-back rows maps them back, which is why calibration is not optional here.
    # Early stopping then watches AUC: log-loss of deliberately skewed scores says little.
    balance = {
        "scale_pos_weight": float((train_y == 0).sum() / max((train_y == 1).sum(), 1)),
        "metric": "auc",
    }
    threads.update(balance)
    test_x, test_y = frame.iloc[test_rows], y[test_rows]

    if config.params is not None:
        chosen, tuning = dict(config.params), [{"params": dict(config.params), "pinned": True}]
    else:
        progress("choosing LightGBM settings on a validation split of the training customers")
        grid = [{**setting, **balance} for setting in DEFAULT_GRID]
        chosen, tuning = tune_churn_params(train_x, train_y, schema, grid, seed=config.seed)
    progress("training and testing the churn model")
    model = ChurnModel().fit(train_x, train_y, schema, {**chosen, **threads}, seed=config.seed)
    calibrated = model.predict_proba(test_x)
    raw = model.predict_raw(test_x)
    metrics = classification_metrics(test_y, calibrated)
    metrics["brier_uncalibrated"] = classification_metrics(test_y, raw)["brier"]
    baseline_model = logistic_baseline(schema).fit(train_x, train_y)
    baseline = classification_metrics(test_y, baseline_model.predict_proba(test_x)[:, 1])

    progress("measuring drift between the training data and today's features")
    today = churn_frame(latest, attributes).loc[:, list(frame.columns)]
    for column in frame.columns:
        # An all-empty column reads back as objects; compare it as the numbers it stands for.
        if pd.api.types.is_numeric_dtype(frame[column]):
            today[column] = pd.to_numeric(today[column], errors="coerce")
    drift = drift_report(frame, today, list(frame.columns), threshold=config.drift_threshold)
    metrics.update(
        {
            "baseline_roc_auc": baseline["roc_auc"],
            "baseline_brier": baseline["brier"],
            "max_psi": drift.max_psi,
            "drift_flag": float(drift.flagged),
        }
    )

    progress("refitting on every labelled customer")
    final = ChurnModel().fit(frame, y, schema, {**chosen, **threads}, seed=config.seed)
    final.info["test_metrics"] = metrics
    final.info["label_as_of"] = label_as_of.isoformat()
    final.info["drift"] = drift.to_dict()
    return ChurnTraining(
        model=final,
        metrics={k: float(v) for k, v in metrics.items()},
        baseline={k: float(v) for k, v in baseline.items()},
        chosen=chosen,
        tuning=tuning,
        drift=drift,
        label_as_of=label_as_of.isoformat(),
        rows={"labelled": len(frame), "train": len(train_rows), "test": len(test_rows)},
        dropped=dropped,
        test_frame=test_x.reset_index(drop=True),
        test_labels=test_y,
        seconds=time.perf_counter() - started,
    )


def _without_leaks(frame: pd.DataFrame, y: np.ndarray) -> tuple[pd.DataFrame, list[str]]:
    """`frame` without numeric columns that alone predict the label (AUC > MAX_SINGLE_AUC)."""
    found: dict[str, float] = {}
    for column in frame.columns:
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(float)
        if np.isnan(values).all() or not pd.api.types.is_numeric_dtype(frame[column]):
            continue
        auc = single_feature_auc(values, y)
        if auc > MAX_SINGLE_AUC:
            found[column] = auc
    if found:
        log.warning(
            "dropped churn input(s) that alone predict the label (single-feature AUC > %.2f): %s",
            MAX_SINGLE_AUC,
            ", ".join(f"{c} ({a:.3f})" for c, a in sorted(found.items())),
        )
    return frame.drop(columns=list(found)), sorted(found)


def _schema(frame: pd.DataFrame) -> TableSchema:
    """Column types for the churn features (the label is attached only for typing)."""
    typed = frame.assign(**{LABEL: 0})
    return infer_columns(typed, label=LABEL, id_col=None)
