"""Train the retention uplift model from randomised exposures; test it on the stable test group.

What it learns from (docs/models.md, "Uplift: who an offer changes"): each customer's first
exposure whose arm was randomised — the universal control group or a campaign / imported
campaign history, never an experiment's variants — whose answer held a retention offer
(`products.is_retention_offer`), and whose outcome window (NEXTOFFER_IMPACT_WINDOW_DAYS)
has closed. The outcome is `retained`: no churn label dated within the window, exactly as
the impact job counts churn (`reads.impact.impact_outcomes`). The inputs are the churn
model's (`scoring.churn.churn_frame`), measured at the start of the exposure's day.

The stable test group (a hash fifth of the customers, `train_offers.test_group`) is never
learnt from; the model kind is chosen by Qini AUC on a validation split of the others,
refitted on all of them, and its Qini AUC on the test group decides promotion.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from nextoffer.domain.errors import NothingToLearnError
from nextoffer.domain.exposures import PRODUCT_SEPARATOR
from nextoffer.domain.impact import TREATED, ImpactPeriod
from nextoffer.evaluation.uplift import (
    average_treatment_effect,
    qini_auc_score,
    uplift_at_k,
    uplift_auc_score,
)
from nextoffer.features.attributes import feature_attributes
from nextoffer.features.builder import build_features, data_as_of
from nextoffer.models.tabular import TableSchema, infer_columns
from nextoffer.models.uplift import UPLIFT_MODELS, UpliftModel
from nextoffer.pipelines.base import Say, TrainingConfig, silent
from nextoffer.pipelines.train_offers import test_group
from nextoffer.scoring.churn import churn_frame
from nextoffer.store import Connection, Engine
from nextoffer.store.reads.attributes import attribute_frame, attribute_schema
from nextoffer.store.reads.impact import impact_outcomes
from nextoffer.store.reads.uplift import first_exposures, retention_product_ids
from nextoffer.store.runs import utcnow

LABEL = "retained"
PRIMARY_METRIC = "qini_auc"
TOP_SHARE = 0.3
"""`uplift_at_30`: treated − control retention among each arm's top 30 % by predicted uplift."""
MIN_PER_ARM = 200
"""Customers each arm needs before an uplift model is trained at all."""
MIN_EVENTS_PER_ARM = 20
"""Churners each arm needs: an effect on churn is learnt from the customers who churned."""
HISTORY_DAYS = 365
"""How far back first exposures are learnt from (their window must have closed too)."""
MAX_FEATURE_DAYS = 12
"""Distinct exposure days with features of their own; beyond it, of the month's first day."""


class NotEnoughRandomisedDataError(NothingToLearnError):
    """Too few randomised exposures of retention offers (or churners among them) to learn from."""


@dataclass(frozen=True)
class UpliftTrainingConfig(TrainingConfig):
    """Knobs of one uplift training run."""

    window_days: int = 30
    """Days after the exposure in which a churn counts (NEXTOFFER_IMPACT_WINDOW_DAYS)."""
    history_days: int = HISTORY_DAYS
    validation_fraction: float = 0.25
    min_per_arm: int = MIN_PER_ARM
    min_events_per_arm: int = MIN_EVENTS_PER_ARM
    models: tuple[str, ...] = tuple(UPLIFT_MODELS)
    """The uplift models to choose from (`models.uplift.UPLIFT_MODELS`)."""
    params: Mapping[str, Any] | None = None
    """LightGBM settings over `models.uplift.DEFAULT_PARAMS`."""


@dataclass(frozen=True)
class UpliftExamples:
    """One row per customer: the churn model's inputs, the arm (1 treated) and `retained`."""

    customer_ids: np.ndarray
    features: pd.DataFrame
    treatment: np.ndarray
    retained: np.ndarray
    exposed_at: np.ndarray

    def __len__(self) -> int:
        return len(self.customer_ids)

    def take(self, rows: np.ndarray) -> UpliftExamples:
        """The examples at positions `rows`."""
        return UpliftExamples(
            self.customer_ids[rows],
            self.features.iloc[rows].reset_index(drop=True),
            self.treatment[rows],
            self.retained[rows],
            self.exposed_at[rows],
        )

    def arm_counts(self) -> dict[str, int]:
        """Customers and churners per arm."""
        treated = self.treatment == 1
        churned = self.retained == 0
        return {
            "treated": int(treated.sum()),
            "control": int((~treated).sum()),
            "treated_churned": int((treated & churned).sum()),
            "control_churned": int((~treated & churned).sum()),
        }


@dataclass
class UpliftTraining:
    """What an uplift training run produced."""

    model: UpliftModel
    metrics: dict[str, float]
    chosen: str
    validation: dict[str, float]
    window_days: int
    exposed_from: str
    exposed_to: str
    rows: dict[str, int] = field(default_factory=dict)
    test: UpliftExamples | None = None
    seconds: float = 0.0

    def score(self, other: UpliftModel) -> dict[str, float]:
        """`other`'s test metrics on this run's test group (e.g. the champion's).

        Columns `other` needs that this data lacks are missing values for it.
        """
        assert self.test is not None
        frame = self.test.features.copy()
        for column in other.schema.features:
            if column not in frame.columns:
                frame[column] = np.nan
        predicted = other.predict_uplift(frame)
        return uplift_metrics(self.test.retained, predicted, self.test.treatment)


def uplift_metrics(
    retained: np.ndarray, uplift: np.ndarray, treatment: np.ndarray
) -> dict[str, float]:
    """Qini AUC (primary), uplift AUC and uplift at 30 % of a ranking, on observed retention."""
    return {
        PRIMARY_METRIC: qini_auc_score(retained, uplift, treatment),
        "uplift_auc": uplift_auc_score(retained, uplift, treatment),
        "uplift_at_30": uplift_at_k(retained, uplift, treatment, k=TOP_SHARE, strategy="by_group"),
    }


def train_uplift(
    engine: Engine,
    config: UpliftTrainingConfig,
    progress: Say = silent,
    as_of: datetime | None = None,
) -> UpliftTraining:
    """The whole run: read randomised examples, choose a model, test it, refit on training rows.

    `as_of` (default: the data's clock, as the impact job's) ends every outcome window.
    Raises `NotEnoughRandomisedDataError` below `min_per_arm` customers or
    `min_events_per_arm` churners in either arm.
    """
    started = time.perf_counter()
    with engine.connect() as conn:
        as_of = as_of or data_as_of(conn, utcnow())
        period = ImpactPeriod(
            as_of, config.window_days, max(config.history_days, config.window_days + 1)
        )
        progress(
            f"randomised exposures of retention offers from {period.exposed_from:%Y-%m-%d} "
            f"to {period.exposed_to:%Y-%m-%d}, {config.window_days}-day outcome window"
        )
        examples = load_examples(conn, period, config)
    in_test = test_group(examples.customer_ids)
    train, test = examples.take(np.flatnonzero(~in_test)), examples.take(np.flatnonzero(in_test))
    for name, part in (("training", train), ("test", test)):
        counts = part.arm_counts()
        if min(counts["treated"], counts["control"]) < 2:
            raise NotEnoughRandomisedDataError(
                f"the {name} customers have {counts['treated']} treated and "
                f"{counts['control']} control rows: too few to learn or test uplift"
            )
    schema = infer_columns(train.features.assign(**{LABEL: 0}), label=LABEL, id_col=None)

    progress(f"choosing among {', '.join(config.models)} by Qini AUC on validation customers")
    validation = choose_model(train, schema, config)
    chosen = max(validation, key=lambda name: _finite(validation[name]))
    progress(f"fitting {chosen} on {len(train):,} customers, testing on {len(test):,}")
    model = _model(chosen, schema, config).fit(train.features, train.treatment, train.retained)
    metrics = uplift_metrics(test.retained, model.predict_uplift(test.features), test.treatment)
    effect = average_treatment_effect(test.retained, test.treatment)
    counts = test.arm_counts()
    metrics.update(
        {
            "ate_retained": effect.value,
            "ate_retained_ci_low": effect.ci_low,
            "ate_retained_ci_high": effect.ci_high,
            "test_treated": float(counts["treated"]),
            "test_control": float(counts["control"]),
            **{f"validation_qini_auc_{name}": value for name, value in validation.items()},
        }
    )
    return UpliftTraining(
        model=model,
        metrics={k: float(v) for k, v in metrics.items()},
        chosen=chosen,
        validation=validation,
        window_days=config.window_days,
        exposed_from=period.exposed_from.isoformat(),
        exposed_to=period.exposed_to.isoformat(),
        rows={"examples": len(examples), "train": len(train), "test": len(test)},
        test=test,
        seconds=time.perf_counter() - started,
    )


def choose_model(
    train: UpliftExamples, schema: TableSchema, config: UpliftTrainingConfig
) -> dict[str, float]:
    """Qini AUC of each candidate on a validation split (stratified by arm and outcome)."""
    strata = train.treatment * 2 + train.retained
    fit_rows, check_rows = train_test_split(
        np.arange(len(train)),
        test_size=config.validation_fraction,
        stratify=strata if np.bincount(strata.astype(np.int64)).min() >= 2 else None,
        random_state=config.seed,
    )
    fit, check = train.take(fit_rows), train.take(check_rows)
    found: dict[str, float] = {}
    for name in config.models:
        model = _model(name, schema, config).fit(fit.features, fit.treatment, fit.retained)
        predicted = model.predict_uplift(check.features)
        found[name] = float(qini_auc_score(check.retained, predicted, check.treatment))
    return found


def load_examples(
    conn: Connection, period: ImpactPeriod, config: UpliftTrainingConfig | None = None
) -> UpliftExamples:
    """Customers first exposed in `period` with a retention offer: inputs, arm, retention.

    With `config`, too few of them (`_check_enough`) raises before any feature is built.
    """
    data = randomised_outcomes(conn, period)
    examples = UpliftExamples(
        customer_ids=data["customer_id"].astype(str).to_numpy(),
        features=pd.DataFrame(index=data.index),
        treatment=(data["arm"] == TREATED).to_numpy(dtype=np.int64),
        retained=1 - data["churned"].to_numpy(dtype=np.int64),
        exposed_at=data["exposed_at"].to_numpy(),
    )
    if config is not None:
        _check_enough(examples, config)
    if data.empty:
        return examples
    data["feature_day"] = _feature_days(data["exposed_at"])
    numeric, categorical = feature_attributes(attribute_schema(conn))
    parts = []
    for day, customers in data.groupby("feature_day"):
        at_day = build_features(conn, pd.Timestamp(str(day)).to_pydatetime())
        parts.append(customers.merge(at_day, on="customer_id", how="inner"))
    data = pd.concat(parts, ignore_index=True).sort_values("customer_id", ignore_index=True)
    # Attributes are today's values (no history is kept), as the churn model's are.
    data = data.merge(attribute_frame(conn), on="customer_id", how="left")
    attributes = [c for c in (*numeric, *categorical) if c in data.columns]
    return UpliftExamples(
        customer_ids=data["customer_id"].astype(str).to_numpy(),
        features=churn_frame(data, attributes),
        treatment=(data["arm"] == TREATED).to_numpy(dtype=np.int64),
        retained=1 - data["churned"].to_numpy(dtype=np.int64),
        exposed_at=data["exposed_at"].to_numpy(),
    )


def randomised_outcomes(conn: Connection, period: ImpactPeriod) -> pd.DataFrame:
    """customer_id, exposed_at, arm, churned of each customer offered a retention offer.

    The first exposure in `period` (untagged by an experiment) whose answer held a
    retention offer; `churned` as the impact job counts it within the window.
    """
    firsts = first_exposures(conn, period)
    retention = retention_product_ids(conn)
    offered = firsts["product_ids"].fillna("").astype(str).str.split(PRODUCT_SEPARATOR)
    firsts = firsts[[bool(retention.intersection(ids)) for ids in offered]]
    columns = ["customer_id", "exposed_at", "arm", "churned"]
    if firsts.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns}).assign(churned=0)
    outcomes = impact_outcomes(conn, period)
    churned = pd.DataFrame(
        {"customer_id": outcomes.customer_id, "churned": outcomes.churned.astype(np.int64)}
    )
    data = firsts.merge(churned, on="customer_id", how="inner")
    data["exposed_at"] = pd.to_datetime(data["exposed_at"], utc=True)
    return data.loc[:, columns].reset_index(drop=True)


def _feature_days(exposed_at: pd.Series) -> pd.Series:
    """The instant each exposure's inputs are measured at: the start of its (UTC) day.

    Every distinct day costs a feature build over all customers: beyond MAX_FEATURE_DAYS
    of them, the first day of the exposure's month (earlier data only, never later).
    """
    days: pd.Series = exposed_at.dt.floor("D")
    if days.nunique() <= MAX_FEATURE_DAYS:
        return days
    firsts: pd.Series = days - pd.to_timedelta(days.dt.day - 1, unit="D")
    return firsts


def _check_enough(examples: UpliftExamples, config: UpliftTrainingConfig) -> None:
    """Raise NotEnoughRandomisedDataError when either arm is too small or has too few churners."""
    counts = examples.arm_counts()
    enough = (
        min(counts["treated"], counts["control"]) >= config.min_per_arm
        and min(counts["treated_churned"], counts["control_churned"]) >= config.min_events_per_arm
    )
    if not enough:
        raise NotEnoughRandomisedDataError(
            f"{counts['treated']:,} treated and {counts['control']:,} control customers were "
            f"offered a retention offer with a closed {config.window_days}-day window "
            f"({counts['treated_churned']:,} and {counts['control_churned']:,} churned); "
            f"an uplift model needs {config.min_per_arm:,} customers and "
            f"{config.min_events_per_arm:,} churners in each arm"
        )


def _model(name: str, schema: TableSchema, config: UpliftTrainingConfig) -> UpliftModel:
    if name not in UPLIFT_MODELS:
        known = ", ".join(UPLIFT_MODELS)
        raise ValueError(f"unknown uplift model {name!r}; known: {known}")
    return UPLIFT_MODELS[name](schema, params=config.params, seed=config.seed, outcome="binary")


def _finite(value: float) -> float:
    return value if np.isfinite(value) else -np.inf
