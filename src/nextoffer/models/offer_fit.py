"""Fitting the offer model on labelled examples: recommender search, ranker search, test table.

One code path for `nextoffer train` (examples from the database: time windows or holdings
snapshots) and `nextoffer evaluate offers` (examples from any holdings file): both build
`Examples` and call these functions.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from nextoffer.evaluation.metrics import ranking_metrics
from nextoffer.models.base import Interactions, Recommender
from nextoffer.models.candidates import ProductTable, RankerInputs, candidate_mask
from nextoffer.models.catalog import (
    POPULARITY_KINDS,
    RECOMMENDERS,
    make_recommender,
    search_grid,
)
from nextoffer.models.offer_model import SHORTLIST_PER_MODEL, OfferModel, RankerData

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

RANKER_GRID: list[dict[str, Any]] = [
    {"num_leaves": 15, "min_child_samples": 50},
    {"num_leaves": 63, "min_child_samples": 100},
]
# Holdings snapshots have one label per customer and few customers (an operator export of
# thousands): smaller leaves, a slower rate and more rounds fit them better (measured with
# `nextoffer evaluate offers` on the generated world's holdings).
# A model per product (`per_product_rounds`) beside the pooled one, without bagging.
SNAPSHOT_RANKER_GRID: list[dict[str, Any]] = [
    {
        "num_leaves": leaves,
        "min_child_samples": 20,
        "learning_rate": 0.05,
        "max_rounds": 1000,
        "per_product_rounds": 200,
        "bagging_fraction": 1.0,
        "bagging_freq": 0,
        "lambda_l2": 0.0,
    }
    for leaves in (7, 15)
]
VALID_FRACTION = 0.2
# Metrics at these cut-offs are always reported: a telco shows one to three offers.
ALWAYS_K = (1, 3)


@dataclass(frozen=True)
class FitConfig:
    """The knobs of fitting: metric cut-off, searched models, pinned settings, sample size."""

    k: int = 10
    seed: int = 42
    threads: int = 0
    ranker_customers: int = 60_000
    recommenders: Sequence[str] = tuple(RECOMMENDERS)
    # name → params, skipping the search for that model (e.g. to pin or to weaken a model).
    recommender_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    ranker_params: Mapping[str, Any] | None = None
    ranker_grid: Sequence[Mapping[str, Any]] = tuple(RANKER_GRID)
    # How many personalised recommenders (the best on validation) feed the ranker besides
    # the popularity kinds; None for all. More inputs than signal makes the ranker worse
    # on small data (measured with `evaluate offers`), and each one costs serving time.
    personal_recommenders: int | None = 1
    # Products each recommender nominates for the ranker (0: the ranker scores every
    # candidate). Learning from a holdings snapshot the shortlist cost 4 points of HR@1 in
    # `evaluate offers` (a hidden product is often one no recommender puts in its top 10);
    # on sales windows it cuts the rows scored by about 40 % at no measurable loss.
    shortlist: int = SHORTLIST_PER_MODEL

    @property
    def tuning_metric(self) -> str:
        """What settings are chosen by: nDCG at the reporting cut-off."""
        return f"ndcg_at_{self.k}"


@dataclass(frozen=True)
class Examples:
    """Customers as the models see them, and what each went on to take (the labels).

    Rows align across every field. `history` is what recommenders see (held or acquired
    before), `held` what is held now (not offered again), `recent` what popularity counts,
    `labels` the products taken next that were candidates (active, not held). A row with
    no label is a customer who took nothing: a negative example for every product.
    """

    features: pd.DataFrame
    history: sp.csr_matrix
    held: sp.csr_matrix
    recent: sp.csr_matrix
    labels: sp.csr_matrix

    def __len__(self) -> int:
        return int(self.history.shape[0])

    def take(self, rows: np.ndarray) -> Examples:
        """The examples at `rows`."""
        return Examples(
            features=self.features.iloc[rows].reset_index(drop=True),
            history=self.history[rows],
            held=self.held[rows],
            recent=self.recent[rows],
            labels=self.labels[rows],
        )

    @property
    def buyers(self) -> np.ndarray:
        """Rows with at least one label."""
        return np.flatnonzero(np.diff(self.labels.indptr) > 0)

    def groups(self) -> np.ndarray:
        """Segment ids as the recommenders' user groups (-1 where unknown)."""
        import pandas as pd

        values = pd.to_numeric(self.features["segment_id"], errors="coerce").fillna(-1)
        return values.to_numpy(dtype=np.int64)


def pool(parts: Sequence[Examples]) -> Examples:
    """Several sets of examples (e.g. time windows) as one."""
    import pandas as pd

    if len(parts) == 1:
        return parts[0]
    return Examples(
        features=pd.concat([p.features for p in parts], ignore_index=True),
        history=sp.vstack([p.history for p in parts], format="csr"),
        held=sp.vstack([p.held for p in parts], format="csr"),
        recent=sp.vstack([p.recent for p in parts], format="csr"),
        labels=sp.vstack([p.labels for p in parts], format="csr"),
    )


def relevant(labels: sp.csr_matrix, held: sp.csr_matrix, products: ProductTable) -> sp.csr_matrix:
    """Acquisitions that were candidates: not already held, and active."""
    labels = sp.csr_matrix(labels, dtype=np.float32)
    kept = labels - labels.multiply(held)
    kept = sp.csr_matrix(kept.multiply(products.active[None, :].astype(np.float32)))
    kept.eliminate_zeros()
    kept.data[:] = 1.0
    return kept


@dataclass
class Fitted:
    """A fitted offer model and how its settings were chosen."""

    model: OfferModel
    chosen: dict[str, dict[str, Any]]
    tuning: dict[str, list[dict[str, Any]]]
    picked: tuple[str, ...] = ()


def fit_recommenders(
    products: ProductTable,
    base: Examples,
    chosen: Mapping[str, Mapping[str, Any]],
    inputs: RankerInputs,
    shortlist: int = SHORTLIST_PER_MODEL,
) -> OfferModel:
    """An offer model whose recommenders are fitted on `base` with the chosen settings."""
    groups = base.groups()
    return OfferModel.fit_recommenders(
        products,
        Interactions(matrix=base.history, user_groups=groups),
        Interactions(matrix=base.recent, user_groups=groups),
        chosen,
        base.features,
        inputs,
        shortlist,
    )


def fit_offer_model(
    products: ProductTable,
    train: Examples,
    inputs: RankerInputs,
    config: FitConfig,
    *,
    ranker_examples: Examples | None = None,
) -> Fitted:
    """Choose every setting on validation customers of `train`, then fit on `train`.

    Recommenders are fitted on `train`'s histories; the ranker learns from
    `ranker_examples` (default: `train`), early-stopped on the validation customers.
    """
    rng = np.random.default_rng(config.seed)
    buyers = train.buyers
    valid_buyers = np.sort(rng.choice(buyers, int(len(buyers) * VALID_FRACTION), replace=False))
    chosen, tuning = tune_recommenders(config, products, train, valid_buyers)
    picked = pick_recommenders(chosen, tuning, config)
    model = fit_recommenders(
        products, train, {name: chosen[name] for name in picked}, inputs, config.shortlist
    )
    fit_sample, valid_sample = ranker_customers(
        train.labels, valid_buyers, config.ranker_customers, rng
    )
    ranker_grid = (
        [dict(config.ranker_params)]
        if config.ranker_params is not None
        else [dict(p) for p in config.ranker_grid]
    )
    best_params, best_rounds, ranker_tuning = tune_ranker(
        model,
        ranker_data(model, train, fit_sample),
        ranker_data(model, train, valid_sample),
        ranker_grid,
        train.take(valid_buyers),
        config,
    )
    chosen["ranker"] = {**best_params, "rounds": best_rounds}
    tuning["ranker"] = ranker_tuning
    if ranker_examples is not None:
        refit_ranker(model, ranker_examples, chosen, config)
    return Fitted(model, chosen, tuning, picked)


def pick_recommenders(
    chosen: Mapping[str, Any], tuning: Mapping[str, list[dict[str, Any]]], config: FitConfig
) -> tuple[str, ...]:
    """The recommenders that feed the ranker: popularity kinds and the best personal ones."""
    key = config.tuning_metric
    popular = [name for name in chosen if name in POPULARITY_KINDS]
    personal = [name for name in chosen if name not in POPULARITY_KINDS]
    if config.personal_recommenders is not None:

        def best(name: str) -> float:
            values = [row[key] for row in tuning[name] if row.get(key) is not None]
            return max(values) if values else float("inf")  # pinned: the operator chose it

        personal = sorted(personal, key=lambda n: -best(n))[: config.personal_recommenders]
    return tuple(name for name in chosen if name in {*popular, *personal})


def fit_standalone(
    products: ProductTable,
    base: Examples,
    chosen: Mapping[str, Mapping[str, Any]],
    skip: Sequence[str] = (),
) -> dict[str, Recommender]:
    """Every tuned recommender but `skip` fitted on `base`, to report each in the test table."""
    groups = base.groups()
    history = Interactions(matrix=base.history, user_groups=groups)
    recent = Interactions(matrix=base.recent, user_groups=groups)
    return {
        name: make_recommender(name, **dict(params)).fit(
            recent if name in POPULARITY_KINDS else history
        )
        for name, params in chosen.items()
        if name != "ranker" and name not in skip
    }


def refit_recommenders(
    fitted: OfferModel, products: ProductTable, base: Examples, chosen: Mapping[str, Any]
) -> OfferModel:
    """The same ranker with its recommenders refitted on `base` (e.g. a later snapshot)."""
    picked = {name: chosen[name] for name in fitted.recommenders}
    model = fit_recommenders(products, base, picked, fitted.inputs, fitted.shortlist_per_model)
    model.levels = fitted.levels
    model.booster, model.best_iteration = fitted.booster, fitted.best_iteration
    model.product_boosters = fitted.product_boosters
    model.params = fitted.params
    return model


def refit_ranker(
    model: OfferModel, examples: Examples, chosen: Mapping[str, Any], config: FitConfig
) -> None:
    """Fit `model`'s ranker on `examples` with the chosen settings and round count."""
    rng = np.random.default_rng(config.seed + 1)
    sample, _ = ranker_customers(
        examples.labels, np.array([], dtype=np.int64), config.ranker_customers, rng
    )
    data = ranker_data(model, examples, sample)
    params = {k: v for k, v in chosen["ranker"].items() if k != "rounds"}
    model.fit_ranker(
        data,
        data,
        params,
        seed=config.seed,
        threads=config.threads,
        fixed_rounds=int(chosen["ranker"]["rounds"]),
    )


def masked_top_k(scores: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """Top-k product indices per row among `mask`, best first; -1 where fewer candidates."""
    masked = np.where(mask, np.nan_to_num(scores, nan=-np.inf), -np.inf)
    order = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    top_scores = np.take_along_axis(masked, order, axis=1)
    order[~np.isfinite(top_scores)] = -1
    return order.astype(np.int32)


def tune_recommenders(
    config: FitConfig, products: ProductTable, train: Examples, valid_rows: np.ndarray
) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """Each recommender's settings, chosen by nDCG@k on validation customers."""
    chosen: dict[str, dict[str, Any]] = {}
    tuning: dict[str, list[dict[str, Any]]] = {}
    groups = train.groups()
    history = Interactions(matrix=train.history, user_groups=groups)
    recent = Interactions(matrix=train.recent, user_groups=groups)
    mask = candidate_mask(train.held[valid_rows], products)
    key = config.tuning_metric
    for name in config.recommenders:
        if name in config.recommender_params:
            chosen[name] = dict(config.recommender_params[name])
            tuning[name] = [{"params": chosen[name], key: None, "pinned": True}]
            continue
        rows: list[dict[str, Any]] = []
        for params in search_grid(name, len(products), config.threads):
            model = make_recommender(name, **params).fit(
                recent if name in POPULARITY_KINDS else history
            )
            scores = model.score_block(train.history[valid_rows], groups[valid_rows])
            top = masked_top_k(scores, mask, config.k)
            value = metric_row(top, train.labels[valid_rows], config.k, len(products))[key]
            rows.append({"params": params, key: value})
        best = max(rows, key=lambda row: row[key])
        chosen[name] = dict(best["params"])
        tuning[name] = rows
        log.info("recommender %s: chose %s (%s %.4f)", name, best["params"], key, best[key])
    return chosen, tuning


@dataclass(frozen=True)
class Sample:
    """Sampled customer rows and the weight each stands for (1 / sampling rate)."""

    rows: np.ndarray
    weights: np.ndarray


def ranker_customers(
    labels: sp.csr_matrix, valid_rows: np.ndarray, limit: int, rng: np.random.Generator
) -> tuple[Sample, Sample]:
    """Customers to train the ranker on, and to validate it on (disjoint).

    Validation customers are the validation buyers plus non-buyers in the same proportion,
    so early stopping sees the same mix as training.
    """
    n = labels.shape[0]
    bought = np.diff(labels.indptr) > 0
    is_valid = np.zeros(n, dtype=bool)
    is_valid[valid_rows] = True
    share_valid = len(valid_rows) / max(int(bought.sum()), 1)
    non_buyers = np.flatnonzero(~bought)
    rng.shuffle(non_buyers)
    is_valid[non_buyers[: int(len(non_buyers) * share_valid)]] = True
    fit = _sample(np.flatnonzero(~is_valid), bought, limit, rng)
    valid = _sample(np.flatnonzero(is_valid), bought, max(limit // 4, 1), rng)
    return fit, valid


def _sample(
    pool_rows: np.ndarray, bought: np.ndarray, limit: int, rng: np.random.Generator
) -> Sample:
    """Up to `limit` buyers of `pool_rows` and as many non-buyers, weighted back to the pool.

    Most customers buy nothing in a window; training on all of them costs time and teaches
    little, so they are sampled 1:1 with buyers and weighted up. The weights keep the
    predicted propensities on the scale of the whole population.
    """
    buyers = pool_rows[bought[pool_rows]]
    others = pool_rows[~bought[pool_rows]]
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


def ranker_data(model: OfferModel, examples: Examples, sample: Sample) -> RankerData:
    """Labelled candidate rows for the sampled customers."""
    rows = sample.rows
    inputs, cand_rows, cols, _mask = model.ranker_rows(
        examples.features.iloc[rows], examples.history[rows], examples.held[rows]
    )
    labels = np.asarray(examples.labels[rows][cand_rows, cols]).ravel().astype(np.float32)
    return RankerData(inputs, labels, sample.weights[cand_rows], rows[cand_rows], cols)


def tune_ranker(
    model: OfferModel,
    fit_data: RankerData,
    valid_data: RankerData,
    grid: Sequence[Mapping[str, Any]],
    valid: Examples,
    config: FitConfig,
) -> tuple[dict[str, Any], int, list[dict[str, Any]]]:
    """Ranker settings chosen by nDCG@k of the validation buyers (`valid`)."""
    key = config.tuning_metric
    rows: list[dict[str, Any]] = []
    best: tuple[float, dict[str, Any], int, Any, Any] | None = None
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
        propensity, _ = model.propensity(valid.features, valid.history, valid.held)
        top = masked_top_k(propensity, ~np.isnan(propensity), config.k)
        value = metric_row(top, valid.labels, config.k, len(model.products))[key]
        rows.append({"params": lgb_params, "rounds": model.best_iteration, key: value})
        if best is None or value > best[0]:
            best = (value, lgb_params, model.best_iteration, model.booster, model.product_boosters)
    assert best is not None
    model.booster, model.best_iteration = best[3], best[2]
    model.product_boosters = best[4]
    return best[1], best[2], rows


def evaluate(
    model: OfferModel,
    test: Examples,
    k: int,
    *,
    allowed: np.ndarray | None = None,
    standalone: Mapping[str, Recommender] | None = None,
) -> dict[str, dict[str, float]]:
    """Test metrics of the ranker and of every recommender alone, on the same buyers.

    Each recommender (the ranker's and those in `standalone`) ranks every candidate
    (active, not held, and `allowed` where given: the product rules); the ranker ranks its
    shortlist of them, as it does in production.
    """
    buyers = test.buyers
    rows = test.take(buyers)
    propensity, scores = model.propensity(rows.features, rows.history, rows.held)
    candidates = candidate_mask(rows.held, model.products)
    ranker_ok = ~np.isnan(propensity)
    if allowed is not None:
        candidates &= allowed[buyers]
        ranker_ok &= allowed[buyers]
    table = {"ranker": ranking_table(propensity, ranker_ok, rows.labels, k)}
    groups = rows.groups()
    for name, recommender in (standalone or {}).items():
        if name not in scores:
            scores[name] = np.asarray(recommender.score_block(rows.history, groups), np.float32)
    for name, values in scores.items():
        table[name] = ranking_table(values, candidates, rows.labels, k)
    return table


def ranking_table(
    scores: np.ndarray, mask: np.ndarray, labels: sp.csr_matrix, k: int
) -> dict[str, float]:
    """Metrics at 1, 3 and k (MLflow-safe names) and MRR over the whole ranking."""
    n_items = scores.shape[1]
    full = masked_top_k(scores, mask, n_items)
    out: dict[str, float] = {}
    for cut in sorted({*ALWAYS_K, k}):
        out.update(metric_row(full, labels, cut, n_items))
    whole = ranking_metrics(full, labels, n_items, n_items)
    out["mrr"] = float(whole[f"mrr@{n_items}"])
    out["users"] = float(whole["users"])
    return out


def metric_row(top: np.ndarray, labels: sp.csr_matrix, k: int, n_items: int) -> dict[str, float]:
    """Ranking metrics at k with MLflow-safe names (`ndcg@10` → `ndcg_at_10`)."""
    values = ranking_metrics(top, labels, k, n_items)
    return {
        name.replace("@", "_at_"): float(value) for name, value in values.items() if name != "users"
    }
