"""Train and evaluate the next-best-offer model on the data it is given, then refit.

Two sources of labels (docs/models.md, "What the ranker learns from"):

**Time windows**, when the data has acquisitions (H = the offer horizon, `end` = the data's
own clock):

    T_train = end − 2H        T_test = end − H        end
    ├── train window ─────────┼── test window ────────┤
    features and history at each window's start, labels = acquisitions within it.

Settings are chosen on validation customers of the train window; test metrics come from
the test window; the registered ranker learns from both windows pooled.

**A holdings snapshot**, when it has too few acquisitions (an export of what customers hold
today): one held product per customer is hidden and learnt back (`models.hide_one`).

Either way a stable fifth of the customers (by a hash of the id) is the test group: their
labels are never learnt from, in this run or any other, so the champion can be re-scored
on them next to the challenger (`OfferTraining.score`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from nextoffer.domain.errors import NothingToLearnError
from nextoffer.features.attributes import feature_attributes
from nextoffer.features.training import (
    Snapshot,
    acquisitions_between,
    build_snapshot,
    current_features,
    load_products,
)
from nextoffer.models.candidates import ProductTable, RankerInputs, choose_inputs
from nextoffer.models.catalog import RECOMMENDERS
from nextoffer.models.hide_one import MIN_HELD, hide_one
from nextoffer.models.leakage import drop_leaking
from nextoffer.models.offer_fit import (
    SNAPSHOT_RANKER_GRID,
    Examples,
    FitConfig,
    Fitted,
    evaluate,
    fit_offer_model,
    fit_standalone,
    pool,
    ranking_table,
    refit_ranker,
    refit_recommenders,
    relevant,
)
from nextoffer.models.offer_model import OfferModel
from nextoffer.pipelines.base import Say, TrainingConfig, silent
from nextoffer.store import Engine
from nextoffer.store.reads.attributes import attribute_frame, attribute_schema

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

# Popularity is measured on what was bought recently, not on what is held: a product
# everyone has held for years is not what sells next.
RECENT_DAYS = 180
LABEL_SOURCES = ("auto", "windows", "snapshot")
# Fewer labelled customers than this in a window (or in the snapshot) is nothing to learn from.
MIN_LABELLED = 30
# One customer in TEST_BUCKETS (by id hash) is in the test group.
TEST_BUCKETS = 5


@dataclass(frozen=True)
class OfferTrainingConfig(TrainingConfig):
    """Knobs of one offers training run."""

    horizon_days: int = 60
    k: int = 10
    segments: int = 6
    ranker_customers: int = 60_000
    labels: str = "auto"
    recommenders: Sequence[str] = tuple(RECOMMENDERS)
    # name → params, skipping the search for that model (e.g. to pin or to weaken a model).
    recommender_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    ranker_params: Mapping[str, Any] | None = None

    def fit_config(self) -> FitConfig:
        """The fitting knobs of this run."""
        return FitConfig(
            k=self.k,
            seed=self.seed,
            threads=self.threads,
            ranker_customers=self.ranker_customers,
            recommenders=tuple(self.recommenders),
            recommender_params=self.recommender_params,
            ranker_params=self.ranker_params,
        )


@dataclass
class OfferTraining:
    """What an offers training run produced, and the test group to score other models on."""

    model: OfferModel
    metrics: dict[str, float]
    table: dict[str, dict[str, float]]
    chosen: dict[str, dict[str, Any]]
    tuning: dict[str, list[dict[str, Any]]]
    calendar: dict[str, str]
    seconds: float
    learned_from: str
    source: str
    dropped: list[str]
    test: Examples
    k: int

    def score(self, other: OfferModel) -> dict[str, float]:
        """`other`'s test metrics on this run's test group (e.g. the champion's).

        Products `other` does not know can never be in its answer (its misses), and inputs
        it needs but the data no longer has are missing values.
        """
        return score_other(other, self.model.products, self.test, self.k)


def train_offers(
    engine: Engine, config: OfferTrainingConfig, progress: Say = silent
) -> OfferTraining:
    """The whole offers run: choose the labels, tune, test, refit."""
    if config.labels not in LABEL_SOURCES:
        raise ValueError(f"labels must be one of {', '.join(LABEL_SOURCES)}: {config.labels!r}")
    started = time.perf_counter()
    with engine.connect() as conn:
        latest = current_features(conn)
        if latest.empty:
            raise NothingToLearnError("no customer features: run `nextoffer features` first")
        products = ProductTable.from_records(load_products(conn))
        if not len(products):
            raise NothingToLearnError("no products: load a products file first")
        attributes = feature_attributes(attribute_schema(conn))
        end = latest["as_of"].max().to_pydatetime()
        ids = list(products.product_ids)
        horizon = timedelta(days=config.horizon_days)
        t_test, t_train = end - horizon, end - 2 * horizon
        customer_ids = latest["customer_id"].to_numpy()
        window_buyers = [
            _buyers(acquisitions_between(conn, start, start + horizon, customer_ids, ids))
            for start in (t_train, t_test)
        ]
        end_snap = build_snapshot(
            conn, end, ids, segments=config.segments, seed=config.seed, features=latest
        )
        source = _choose_source(config.labels, window_buyers, end_snap, products)
        if source == "windows":
            progress(f"snapshots at {t_train:%Y-%m-%d} and {t_test:%Y-%m-%d}")
            windows = [
                _window(conn, start, start + horizon, ids, config, products)
                for start in (t_train, t_test)
            ]
    if source == "windows":
        return _train_on_windows(
            products, windows, end_snap, attributes, config, progress, started, (t_train, end)
        )
    return _train_on_snapshot(products, end_snap, attributes, config, progress, started)


def _buyers(labels: sp.csr_matrix) -> int:
    return int((np.diff(sp.csr_matrix(labels).indptr) > 0).sum())


def _choose_source(
    wanted: str, window_buyers: list[int], end_snap: Snapshot, products: ProductTable
) -> str:
    """Windows when both have enough buyers, else the snapshot; one line when neither can."""
    windows_ok = min(window_buyers) >= MIN_LABELLED
    active_held = end_snap.held.multiply(products.active[None, :].astype(np.float32)).tocsr()
    multi = int((np.diff(active_held.indptr) >= MIN_HELD).sum())
    snapshot_ok = multi >= MIN_LABELLED
    if wanted == "windows" and not windows_ok:
        raise NothingToLearnError(
            f"nothing to learn from in time windows: {window_buyers[0]:,} and "
            f"{window_buyers[1]:,} customers acquired a product in the last two windows "
            f"(need {MIN_LABELLED} in each); load transactions, or train with "
            "NEXTOFFER_TRAINING_LABELS=snapshot"
        )
    if wanted == "snapshot" and not snapshot_ok:
        raise NothingToLearnError(
            f"nothing to learn from in the holdings: {multi:,} customers hold two or more "
            f"active products (need {MIN_LABELLED}); load subscriptions"
        )
    if wanted != "auto":
        return wanted
    if windows_ok:
        return "windows"
    if snapshot_ok:
        return "snapshot"
    raise NothingToLearnError(
        f"nothing to learn from: {window_buyers[0]:,} and {window_buyers[1]:,} customers "
        f"acquired a product in the last two windows and {multi:,} hold two or more active "
        f"products (need {MIN_LABELLED}); load transactions or subscriptions"
    )


def _window(
    conn: Any,
    start: datetime,
    stop: datetime,
    ids: list[str],
    config: OfferTrainingConfig,
    products: ProductTable,
) -> Examples:
    """Examples of one time window: the state at `start`, acquisitions until `stop`."""
    snap = build_snapshot(conn, start, ids, segments=config.segments, seed=config.seed)
    # Attributes have no history: today's values stand for the window's (docs/models.md).
    features = snap.features.merge(attribute_frame(conn), on="customer_id", how="left")
    snap = replace(snap, features=features)
    labels = acquisitions_between(conn, start, stop, snap.customer_ids, ids)
    recent = acquisitions_between(
        conn, start - timedelta(days=RECENT_DAYS), start, snap.customer_ids, ids
    )
    return Examples(
        features=snap.features,
        history=snap.history,
        held=snap.held,
        recent=recent,
        labels=relevant(labels, snap.held, products),
    )


def test_group(customer_ids: np.ndarray) -> np.ndarray:
    """True for the customers in the test group: stable across runs and data changes."""
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(str(c).encode(), digest_size=4).digest()) % TEST_BUCKETS
            == 0
            for c in customer_ids
        ],
        dtype=bool,
    )


def _split(examples: Examples) -> tuple[Examples, Examples]:
    """(the examples of customers outside the test group, those inside it)."""
    in_test = test_group(examples.features["customer_id"].to_numpy())
    return examples.take(np.flatnonzero(~in_test)), examples.take(np.flatnonzero(in_test))


def _train_on_windows(
    products: ProductTable,
    windows: list[Examples],
    end_snap: Snapshot,
    attributes: tuple[list[str], list[str]],
    config: OfferTrainingConfig,
    progress: Say,
    started: float,
    span: tuple[datetime, datetime],
) -> OfferTraining:
    fit = config.fit_config()
    (train, _), (test_window_train, test) = (_split(w) for w in windows)
    inputs, dropped = _inputs(train, attributes, products, windows=True)
    progress("choosing settings on validation customers of the train window")
    fitted = fit_offer_model(products, train, inputs, fit)
    progress("evaluating on the test window")
    test_model = refit_recommenders(fitted.model, products, windows[1], fitted.chosen)
    table = evaluate(
        test_model,
        test,
        config.k,
        standalone=fit_standalone(
            products, windows[1], fitted.chosen, skip=list(test_model.recommenders)
        ),
    )
    progress("refitting on the newest data, both windows pooled")
    end_base = Examples(
        features=end_snap.features,
        history=end_snap.history,
        held=end_snap.held,
        recent=end_snap.history,
        labels=sp.csr_matrix(end_snap.held.shape, dtype=np.float32),
    )
    final = refit_recommenders(fitted.model, products, end_base, fitted.chosen)
    pooled = pool([train, test_window_train])
    refit_ranker(final, pooled, fitted.chosen, fit)
    calendar = {
        "train_as_of": span[0].isoformat(),
        "test_as_of": (span[1] - timedelta(days=config.horizon_days)).isoformat(),
        "data_as_of": span[1].isoformat(),
        "horizon_days": str(config.horizon_days),
    }
    learned = (
        f"learned from 2 time windows of {config.horizon_days} days "
        f"({span[0]:%Y-%m-%d} → {span[1]:%Y-%m-%d}): {len(pooled.buyers):,} buyers among "
        f"{len(pooled):,} customer-windows; tested on {len(test.buyers):,} buyers of the "
        "last window in the test group"
    )
    # The test table is the ranker tuned on the train window alone: out of time.
    return _finish(
        final,
        table,
        fitted,
        calendar,
        learned,
        "windows",
        dropped,
        test,
        config,
        started,
        progress,
    )


def _train_on_snapshot(
    products: ProductTable,
    end_snap: Snapshot,
    attributes: tuple[list[str], list[str]],
    config: OfferTrainingConfig,
    progress: Say,
    started: float,
) -> OfferTraining:
    fit = replace(config.fit_config(), ranker_grid=tuple(SNAPSHOT_RANKER_GRID), shortlist=0)
    everyone = hide_one(end_snap.features, end_snap.held, end_snap.history, products, config.seed)
    train, test = _split(everyone)
    inputs, dropped = _inputs(train, attributes, products, windows=False)
    progress("choosing settings on validation customers (one held product hidden each)")
    fitted = fit_offer_model(products, train, inputs, fit)
    progress("refitting the recommenders on every customer's visible holdings")
    final = refit_recommenders(fitted.model, products, everyone, fitted.chosen)
    refit_ranker(final, train, fitted.chosen, fit)
    table = evaluate(
        final,
        test,
        config.k,
        standalone=fit_standalone(products, everyone, fitted.chosen, skip=list(final.recommenders)),
    )
    calendar = {
        "data_as_of": end_snap.as_of.isoformat(),
        "snapshot_as_of": end_snap.as_of.isoformat(),
    }
    learned = (
        f"learned from the holdings on {end_snap.as_of:%Y-%m-%d}: "
        f"{len(train.buyers):,} customers holding {MIN_HELD}+ products, one hidden each "
        f"(no acquisitions to learn from); tested on {len(test.buyers):,} in the test group"
    )
    return _finish(
        final,
        table,
        fitted,
        calendar,
        learned,
        "snapshot",
        dropped,
        test,
        config,
        started,
        progress,
    )


def _inputs(
    train: Examples,
    attributes: tuple[list[str], list[str]],
    products: ProductTable,
    *,
    windows: bool,
) -> tuple[RankerInputs, list[str]]:
    """The ranker's inputs for this data, without any that alone give the labels away."""
    numeric, categorical = attributes
    inputs = choose_inputs(
        train.features,
        train.held,
        numeric_attributes=numeric,
        categorical_attributes=categorical,
    )
    # Sales windows also have customers who took nothing: "took anything" is checked too.
    return drop_leaking(train, inputs, took_anything=windows)


def _finish(
    final: OfferModel,
    table: dict[str, dict[str, float]],
    fitted: Fitted,
    calendar: dict[str, str],
    learned: str,
    source: str,
    dropped: list[str],
    test: Examples,
    config: OfferTrainingConfig,
    started: float,
    progress: Say,
) -> OfferTraining:
    k = config.k
    metrics = {
        **table["ranker"],
        **{
            f"{name}_ndcg_at_{k}": row[f"ndcg_at_{k}"]
            for name, row in table.items()
            if name != "ranker"
        },
    }
    final.meta = {
        "calendar": calendar,
        "test_metrics": metrics,
        "chosen": fitted.chosen,
        "labels": source,
        "learned_from": learned,
        "dropped_inputs": dropped,
    }
    progress(learned)
    return OfferTraining(
        model=final,
        metrics=metrics,
        table=table,
        chosen=fitted.chosen,
        tuning=fitted.tuning,
        calendar=calendar,
        seconds=time.perf_counter() - started,
        learned_from=learned,
        source=source,
        dropped=dropped,
        test=test.take(test.buyers),
        k=k,
    )


def score_other(
    other: OfferModel, products: ProductTable, test: Examples, k: int
) -> dict[str, float]:
    """Test metrics of a model trained on another catalogue or inputs, on `test`."""
    import pandas as pd

    theirs = list(other.products.product_ids)
    ours = list(products.product_ids)
    position = {pid: j for j, pid in enumerate(theirs)}
    mapping = np.array([position.get(pid, -1) for pid in ours])
    known = mapping >= 0

    def to_theirs(matrix: sp.csr_matrix) -> sp.csr_matrix:
        coo = sp.csr_matrix(matrix).tocoo()
        keep = known[coo.col]
        return sp.csr_matrix(
            (coo.data[keep], (coo.row[keep], mapping[coo.col[keep]])),
            shape=(matrix.shape[0], len(theirs)),
        )

    features = test.features.copy()
    needed = [*other.inputs.numeric, *other.inputs.categorical, "segment_id"]
    for column in needed:
        if column not in features.columns:
            features[column] = pd.Series([None] * len(features), dtype=object)
    propensity, _ = other.propensity(features, to_theirs(test.history), to_theirs(test.held))
    scores = np.full((len(test), len(ours)), np.nan, dtype=np.float32)
    scores[:, known] = propensity[:, mapping[known]]
    return ranking_table(scores, ~np.isnan(scores), test.labels, k)
