"""Train and evaluate the next-best-offer model on a time-based split, then refit on all data.

Calendar (H = the offer horizon, default 60 days; `end` = the data's own clock):

    T_train = end − 2H        T_test = end − H        end
    ├── train window ─────────┼── test window ────────┤
    features and history at T_train, labels = acquisitions in [T_train, T_test):
        hyperparameters are chosen here, on validation customers carved from this window;
    features and history at T_test, labels = acquisitions in [T_test, end):
        the reported (test) metrics, never used to choose anything;
    the registered model is then refitted with the chosen settings on the newest data
    (recommenders on history at `end`, ranker on the T_test window).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from nextoffer.evaluation.metrics import ranking_metrics
from nextoffer.features.training import (
    Snapshot,
    acquisitions_between,
    build_snapshot,
    current_features,
    load_products,
)
from nextoffer.models.base import Interactions
from nextoffer.models.candidates import ProductTable, candidate_mask
from nextoffer.models.catalog import RECOMMENDERS, make_recommender, search_grid
from nextoffer.models.offer_model import POPULARITY_KINDS, OfferModel, RankerData
from nextoffer.pipelines.base import Say, TrainingConfig, silent
from nextoffer.store import Engine

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

# Popularity is measured on what was bought recently, not on what is held: a product
# everyone has held for years is not what sells next.
RECENT_DAYS = 180
RANKER_GRID: list[dict[str, Any]] = [
    {"num_leaves": 15, "min_child_samples": 50},
    {"num_leaves": 63, "min_child_samples": 100},
]
VALID_FRACTION = 0.2


@dataclass(frozen=True)
class OfferTrainingConfig(TrainingConfig):
    """Knobs of one offers training run."""

    horizon_days: int = 60
    k: int = 10
    segments: int = 6
    ranker_customers: int = 60_000
    # name → params, skipping the search for that model (e.g. to pin or to weaken a model).
    recommender_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    ranker_params: Mapping[str, Any] | None = None


@dataclass
class OfferTraining:
    """What an offers training run produced."""

    model: OfferModel
    metrics: dict[str, float]
    table: dict[str, dict[str, float]]
    chosen: dict[str, dict[str, Any]]
    tuning: dict[str, list[dict[str, Any]]]
    calendar: dict[str, str]
    seconds: float


def train_offers(
    engine: Engine, config: OfferTrainingConfig, progress: Say = silent
) -> OfferTraining:
    """The whole offers run: tune on the train window, test on the next, refit on all."""
    started = time.perf_counter()
    with engine.connect() as conn:
        records = load_products(conn)
        products = ProductTable.from_records(records)
        latest = current_features(conn)
        if latest.empty:
            raise ValueError("no customer features: run `nextoffer features` first")
        end = latest["as_of"].max().to_pydatetime()
        horizon = timedelta(days=config.horizon_days)
        t_test, t_train = end - horizon, end - 2 * horizon
        ids = list(products.product_ids)

        progress(f"snapshots at {t_train:%Y-%m-%d} and {t_test:%Y-%m-%d}")
        train_snap = build_snapshot(conn, t_train, ids, segments=config.segments, seed=config.seed)
        train_labels = acquisitions_between(conn, t_train, t_test, train_snap.customer_ids, ids)
        train_recent = _recent(conn, train_snap, ids)
        test_snap = build_snapshot(conn, t_test, ids, segments=config.segments, seed=config.seed)
        test_labels = acquisitions_between(conn, t_test, end, test_snap.customer_ids, ids)
        test_recent = _recent(conn, test_snap, ids)
        end_snap = build_snapshot(
            conn, end, ids, segments=config.segments, seed=config.seed, features=latest
        )
        end_recent = _recent(conn, end_snap, ids)

    rng = np.random.default_rng(config.seed)
    train_relevant = _relevant(train_labels, train_snap.held, products)
    buyers = np.flatnonzero(np.diff(train_relevant.indptr) > 0)
    valid_buyers = np.sort(rng.choice(buyers, int(len(buyers) * VALID_FRACTION), replace=False))

    progress("choosing recommender settings on validation customers")
    chosen, tuning = _tune_recommenders(
        config, products, train_snap, train_recent, train_relevant, valid_buyers
    )

    progress("training the ranker")
    model = _fit_recommenders(products, train_snap, train_recent, chosen, train_snap.features)
    fit_sample, valid_sample = _ranker_customers(
        train_relevant, valid_buyers, config.ranker_customers, rng
    )
    fit_data = _ranker_data(model, train_snap, train_relevant, fit_sample)
    valid_data = _ranker_data(model, train_snap, train_relevant, valid_sample)
    ranker_grid = [dict(config.ranker_params)] if config.ranker_params is not None else RANKER_GRID
    best_params, best_rounds, ranker_tuning = _tune_ranker(
        model, fit_data, valid_data, ranker_grid, train_snap, train_relevant, valid_buyers, config
    )
    chosen["ranker"] = {**best_params, "rounds": best_rounds}
    tuning["ranker"] = ranker_tuning

    progress("evaluating on the test window")
    picked = {name: chosen[name] for name in model.recommenders}
    test_model = _fit_recommenders(products, test_snap, test_recent, picked, train_snap.features)
    test_model.levels = model.levels
    test_model.booster, test_model.best_iteration = model.booster, model.best_iteration
    test_model.params = model.params
    table = _evaluate(
        test_model, test_snap, _relevant(test_labels, test_snap.held, products), config
    )
    metrics = {
        **{key: value for key, value in table["ranker"].items()},
        **{
            f"{name}_ndcg_at_{config.k}": table[name][f"ndcg_at_{config.k}"]
            for name in table
            if name != "ranker"
        },
    }

    progress("refitting on the newest data")
    final = _fit_recommenders(products, end_snap, end_recent, picked, end_snap.features)
    test_relevant = _relevant(test_labels, test_snap.held, products)
    final_sample, _ = _ranker_customers(
        test_relevant, np.array([], dtype=np.int64), config.ranker_customers, rng
    )
    final_data = _ranker_data(final, test_snap, test_relevant, final_sample)
    final.fit_ranker(
        final_data,
        final_data,
        best_params,
        seed=config.seed,
        threads=config.threads,
        fixed_rounds=best_rounds,
    )
    calendar = {
        "train_as_of": t_train.isoformat(),
        "test_as_of": t_test.isoformat(),
        "data_as_of": end.isoformat(),
        "horizon_days": str(config.horizon_days),
    }
    final.meta = {"calendar": calendar, "test_metrics": metrics, "chosen": chosen}
    seconds = time.perf_counter() - started
    return OfferTraining(final, metrics, table, chosen, tuning, calendar, seconds)


def _recent(conn: Any, snapshot: Snapshot, ids: list[str]) -> sp.csr_matrix:
    start = snapshot.as_of - timedelta(days=RECENT_DAYS)
    return acquisitions_between(conn, start, snapshot.as_of, snapshot.customer_ids, ids)


def _interactions(matrix: sp.csr_matrix, snapshot: Snapshot) -> Interactions:
    groups = snapshot.features["segment_id"].fillna(-1).to_numpy(dtype=np.int64)
    return Interactions(matrix=matrix, user_groups=groups)


def _fit_recommenders(
    products: ProductTable,
    snapshot: Snapshot,
    recent: sp.csr_matrix,
    chosen: Mapping[str, Mapping[str, Any]],
    features: pd.DataFrame,
) -> OfferModel:
    """An offer model whose recommenders are fitted on a snapshot with the chosen settings."""
    history = _interactions(snapshot.history, snapshot)
    return OfferModel.fit_recommenders(
        products, history, _interactions(recent, snapshot), chosen, features
    )


def _relevant(labels: sp.csr_matrix, held: sp.csr_matrix, products: ProductTable) -> sp.csr_matrix:
    """Acquisitions that were candidates: not already held, and active."""
    labels = sp.csr_matrix(labels, dtype=np.float32)
    kept = labels - labels.multiply(held)
    kept = sp.csr_matrix(kept.multiply(products.active[None, :].astype(np.float32)))
    kept.eliminate_zeros()
    return kept


def _masked_top_k(scores: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """Top-k product indices per row among `mask`, best first; -1 where fewer candidates."""
    masked = np.where(mask, np.nan_to_num(scores, nan=-np.inf), -np.inf)
    order = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    top_scores = np.take_along_axis(masked, order, axis=1)
    order[~np.isfinite(top_scores)] = -1
    return order.astype(np.int32)


def _tune_recommenders(
    config: OfferTrainingConfig,
    products: ProductTable,
    snapshot: Snapshot,
    recent: sp.csr_matrix,
    relevant: sp.csr_matrix,
    valid_rows: np.ndarray,
) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """Each recommender's settings, chosen by nDCG@k on validation customers."""
    chosen: dict[str, dict[str, Any]] = {}
    tuning: dict[str, list[dict[str, Any]]] = {}
    history = _interactions(snapshot.history, snapshot)
    recent_data = _interactions(recent, snapshot)
    groups = history.user_groups
    assert groups is not None
    mask = candidate_mask(snapshot.held[valid_rows], products)
    key = f"ndcg_at_{config.k}"
    for name in RECOMMENDERS:
        if name in config.recommender_params:
            chosen[name] = dict(config.recommender_params[name])
            tuning[name] = [{"params": chosen[name], key: None, "pinned": True}]
            continue
        rows: list[dict[str, Any]] = []
        for params in search_grid(name, len(products), config.threads):
            model = make_recommender(name, **params).fit(
                recent_data if name in POPULARITY_KINDS else history
            )
            scores = model.score_block(snapshot.history[valid_rows], groups[valid_rows])
            top = _masked_top_k(scores, mask, config.k)
            value = _metric(top, relevant[valid_rows], config.k, len(products))[key]
            rows.append({"params": params, key: value})
        best = max(rows, key=lambda row: row[key])
        chosen[name] = dict(best["params"])
        tuning[name] = rows
        log.info("recommender %s: chose %s (%s %.4f)", name, best["params"], key, best[key])
    return chosen, tuning


def _ranker_customers(
    relevant: sp.csr_matrix, valid_rows: np.ndarray, limit: int, rng: np.random.Generator
) -> tuple[Sample, Sample]:
    """Customers to train the ranker on, and to validate it on (disjoint).

    Validation customers are the validation buyers plus non-buyers in the same proportion,
    so early stopping sees the same mix as training.
    """
    n = relevant.shape[0]
    bought = np.diff(relevant.indptr) > 0
    is_valid = np.zeros(n, dtype=bool)
    is_valid[valid_rows] = True
    share_valid = len(valid_rows) / max(int(bought.sum()), 1)
    non_buyers = np.flatnonzero(~bought)
    rng.shuffle(non_buyers)
    is_valid[non_buyers[: int(len(non_buyers) * share_valid)]] = True
    fit = _sample(np.flatnonzero(~is_valid), bought, limit, rng)
    valid = _sample(np.flatnonzero(is_valid), bought, max(limit // 4, 1), rng)
    return fit, valid


@dataclass(frozen=True)
class Sample:
    """Sampled customer rows and the weight each stands for (1 / sampling rate)."""

    rows: np.ndarray
    weights: np.ndarray


def _sample(pool: np.ndarray, bought: np.ndarray, limit: int, rng: np.random.Generator) -> Sample:
    """Up to `limit` buyers of `pool` and as many non-buyers, weighted back to the pool.

    Most customers buy nothing in a window; training on all of them costs time and teaches
    little, so they are sampled 1:1 with buyers and weighted up. The weights keep the
    predicted propensities on the scale of the whole population.
    """
    buyers = pool[bought[pool]]
    others = pool[~bought[pool]]
    take_buyers = min(len(buyers), limit)
    take_others = min(len(others), max(take_buyers, 1))
    chosen_buyers = rng.choice(buyers, take_buyers, replace=False)
    chosen_others = rng.choice(others, take_others, replace=False)
    rows = np.concatenate([chosen_buyers, chosen_others])
    weights = np.concatenate(
        [
            np.full(take_buyers, len(buyers) / max(take_buyers, 1)),
            np.full(take_others, len(others) / max(take_others, 1)),
        ]
    )
    order = np.argsort(rows)
    return Sample(rows[order], weights[order].astype(np.float32))


def _ranker_data(
    model: OfferModel, snapshot: Snapshot, relevant: sp.csr_matrix, sample: Sample
) -> RankerData:
    """Labelled candidate rows for the sampled customers."""
    rows = sample.rows
    features = snapshot.features.iloc[rows]
    inputs, cand_rows, cols, _mask = model.ranker_rows(
        features, snapshot.history[rows], snapshot.held[rows]
    )
    labels = np.asarray(relevant[rows][cand_rows, cols]).ravel().astype(np.float32)
    return RankerData(inputs, labels, sample.weights[cand_rows], rows[cand_rows], cols)


def _tune_ranker(
    model: OfferModel,
    fit_data: RankerData,
    valid_data: RankerData,
    grid: list[dict[str, Any]],
    snapshot: Snapshot,
    relevant: sp.csr_matrix,
    valid_buyers: np.ndarray,
    config: OfferTrainingConfig,
) -> tuple[dict[str, Any], int, list[dict[str, Any]]]:
    """Ranker settings chosen by nDCG@k of the validation buyers."""
    key = f"ndcg_at_{config.k}"
    rows: list[dict[str, Any]] = []
    best: tuple[float, dict[str, Any], int, Any] | None = None
    for params in grid:
        fixed = params.get("rounds")
        lgb_params = {k: v for k, v in params.items() if k != "rounds"}
        model.fit_ranker(
            fit_data,
            valid_data,
            lgb_params,
            seed=config.seed,
            threads=config.threads,
            fixed_rounds=None if fixed is None else int(fixed),
        )
        propensity, _ = model.propensity(
            snapshot.features.iloc[valid_buyers],
            snapshot.history[valid_buyers],
            snapshot.held[valid_buyers],
        )
        mask = ~np.isnan(propensity)
        top = _masked_top_k(propensity, mask, config.k)
        value = _metric(top, relevant[valid_buyers], config.k, len(model.products))[key]
        rows.append({"params": lgb_params, "rounds": model.best_iteration, key: value})
        if best is None or value > best[0]:
            best = (value, lgb_params, model.best_iteration, model.booster)
    assert best is not None
    model.booster, model.best_iteration = best[3], best[2]
    return best[1], best[2], rows


def _evaluate(
    model: OfferModel, snapshot: Snapshot, relevant: sp.csr_matrix, config: OfferTrainingConfig
) -> dict[str, dict[str, float]]:
    """Test metrics of the ranker and of every recommender alone, for the same customers.

    Each recommender ranks every candidate (active, not held); the ranker ranks its
    shortlist of them, which is what it does in production.
    """
    buyers = np.flatnonzero(np.diff(relevant.indptr) > 0)
    propensity, scores = model.propensity(
        snapshot.features.iloc[buyers], snapshot.history[buyers], snapshot.held[buyers]
    )
    candidates = candidate_mask(snapshot.held[buyers], model.products)
    truth = relevant[buyers]
    n_items = len(model.products)
    top = _masked_top_k(propensity, ~np.isnan(propensity), config.k)
    table = {"ranker": _metric(top, truth, config.k, n_items)}
    for name, values in scores.items():
        table[name] = _metric(_masked_top_k(values, candidates, config.k), truth, config.k, n_items)
    return table


def _metric(top: np.ndarray, relevant: sp.csr_matrix, k: int, n_items: int) -> dict[str, float]:
    """Ranking metrics with MLflow-safe names (`ndcg@10` → `ndcg_at_10`)."""
    values = ranking_metrics(top, relevant, k, n_items)
    return {name.replace("@", "_at_"): float(value) for name, value in values.items()}
