"""The next-best-offer model: recommenders as candidate scorers, a LightGBM propensity ranker."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import scipy.sparse as sp

from nextoffer.models.base import Interactions, Recommender
from nextoffer.models.candidates import (
    ProductTable,
    RankerInputs,
    candidate_mask,
    candidate_matrix,
    fit_levels,
    shortlist,
)
from nextoffer.models.catalog import POPULARITY_KINDS, load_recommender, make_recommender

FORMAT_VERSION = 2
# Version 1 models (before custom attributes and held flags) load with the default inputs.
_READABLE_FORMATS = (1, 2)
# Each recommender nominates its top products; the ranker scores their union (0: every
# candidate, as models learnt from holdings snapshots do; see `FitConfig.shortlist`).
SHORTLIST_PER_MODEL = 10
# Customers scored at a time: bounds the dense customers × products blocks.
SCORE_BLOCK_ROWS = 50_000
DEFAULT_RANKER_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.1,
    "num_leaves": 31,
    "min_child_samples": 50,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "max_rounds": 300,
    "early_stopping_rounds": 30,
}
# Keys of the params dict that are ours, not LightGBM's.
_OWN_KEYS = {"max_rounds", "early_stopping_rounds", "per_product_rounds"}
# A product needs this many positive (and negative) training rows for a model of its own.
MIN_PRODUCT_ROWS = 5


@dataclass
class RankerData:
    """Labelled candidate rows for training: inputs, 0/1 labels, weights, customer groups."""

    inputs: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    rows: np.ndarray
    cols: np.ndarray


@dataclass
class OfferModel:
    """Scores every (customer, product) pair with a purchase propensity in [0, 1].

    Recommenders are fitted on interaction history and give each candidate a score and a
    rank; the LightGBM binary model combines those with customer and product features.
    Business rules (eligibility, caps, value) are applied afterwards, in `domain.offers`.
    """

    products: ProductTable
    recommenders: dict[str, Recommender]
    levels: dict[str, list[str]]
    params: dict[str, Any] = field(default_factory=dict)
    booster: lgb.Booster | None = None
    best_iteration: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    # Products each recommender nominates; the ranker scores the union (0 = everything).
    shortlist_per_model: int = SHORTLIST_PER_MODEL
    inputs: RankerInputs = field(default_factory=RankerInputs)
    # Catalogue position → a booster for that product alone (`per_product_rounds` > 0);
    # products without one are scored by the pooled `booster`.
    product_boosters: dict[int, lgb.Booster] = field(default_factory=dict)

    @classmethod
    def fit_recommenders(
        cls,
        products: ProductTable,
        history: Interactions,
        recent: Interactions,
        recommender_params: Mapping[str, Mapping[str, Any]],
        features: pd.DataFrame,
        inputs: RankerInputs | None = None,
        shortlist_per_model: int = SHORTLIST_PER_MODEL,
    ) -> OfferModel:
        """Fit the recommenders (popularity kinds on `recent`, the rest on `history`)."""
        recommenders: dict[str, Recommender] = {}
        for name, params in recommender_params.items():
            data = recent if name in POPULARITY_KINDS else history
            recommenders[name] = make_recommender(name, **dict(params)).fit(data)
        inputs = inputs or RankerInputs()
        return cls(
            products,
            recommenders,
            fit_levels(features, products, inputs),
            inputs=inputs,
            shortlist_per_model=shortlist_per_model,
        )

    @property
    def input_names(self) -> list[str]:
        """The ranker's input column names."""
        return self.inputs.names(list(self.recommenders), self.products)

    def recommender_scores(
        self, features: pd.DataFrame, history: sp.csr_matrix
    ) -> dict[str, np.ndarray]:
        """Each recommender's scores, customers × products, for one block of customers."""
        groups = _groups(features)
        return {
            name: np.asarray(model.score_block(history, groups), dtype=np.float32)
            for name, model in self.recommenders.items()
        }

    def ranker_rows(
        self, features: pd.DataFrame, history: sp.csr_matrix, held: sp.csr_matrix
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(inputs, rows, cols, candidate mask) for one block of customers."""
        scores = self.recommender_scores(features, history)
        mask = shortlist(candidate_mask(held, self.products), scores, self.shortlist_per_model)
        inputs, rows, cols = candidate_matrix(
            features, self.products, mask, scores, self.levels, self.inputs, held
        )
        return inputs, rows, cols, mask

    def fit_ranker(
        self,
        train: RankerData,
        valid: RankerData,
        params: Mapping[str, Any] | None = None,
        *,
        seed: int = 42,
        threads: int = 0,
        fixed_rounds: int | None = None,
    ) -> OfferModel:
        """Train the propensity model; early stopping on `valid` unless `fixed_rounds`."""
        merged = {**DEFAULT_RANKER_PARAMS, **(params or {})}
        lgb_params = {k: v for k, v in merged.items() if k not in _OWN_KEYS}
        lgb_params.update(
            seed=seed, deterministic=True, verbose=-1, num_threads=threads, force_col_wise=True
        )
        names = self.input_names
        categorical = self.inputs.categorical_names()
        train_set = lgb.Dataset(
            train.inputs,
            train.labels,
            weight=train.weights,
            feature_name=names,
            categorical_feature=categorical,
            free_raw_data=True,
        )
        if fixed_rounds is not None:
            booster = lgb.train(lgb_params, train_set, num_boost_round=max(1, fixed_rounds))
            best = booster.current_iteration()
        else:
            valid_set = lgb.Dataset(
                valid.inputs, valid.labels, weight=valid.weights, reference=train_set
            )
            booster = lgb.train(
                lgb_params,
                train_set,
                num_boost_round=int(merged["max_rounds"]),
                valid_sets=[valid_set],
                callbacks=[lgb.early_stopping(int(merged["early_stopping_rounds"]), verbose=False)],
            )
            best = booster.best_iteration or booster.current_iteration()
        self.booster = booster
        self.best_iteration = int(best)
        self.params = merged
        self.product_boosters = self._fit_per_product(
            train, lgb_params, int(merged.get("per_product_rounds") or 0)
        )
        return self

    def _fit_per_product(
        self, train: RankerData, lgb_params: Mapping[str, Any], rounds: int
    ) -> dict[int, lgb.Booster]:
        """One booster per product with enough takers and non-takers, on its rows alone.

        On a small catalogue with one label per customer (holdings snapshots) a model per
        product learns each product's own interactions with the holdings and attributes,
        which the pooled model has to find through splits on the product id first.
        """
        if rounds <= 0:
            return {}
        boosters: dict[int, lgb.Booster] = {}
        names = self.input_names
        categorical = self.inputs.categorical_names()
        for j in np.unique(train.cols):
            rows = train.cols == j
            positives = int(train.labels[rows].sum())
            if positives < MIN_PRODUCT_ROWS or rows.sum() - positives < MIN_PRODUCT_ROWS:
                continue
            data = lgb.Dataset(
                train.inputs[rows],
                train.labels[rows],
                weight=train.weights[rows],
                feature_name=names,
                categorical_feature=categorical,
                free_raw_data=True,
            )
            boosters[int(j)] = lgb.train(dict(lgb_params), data, num_boost_round=rounds)
        return boosters

    def predict_rows(self, inputs: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """The ranker's propensity of candidate rows (product `cols`), float32."""
        if self.booster is None:
            raise ValueError("the ranker is not trained")
        out = np.asarray(
            self.booster.predict(inputs, num_iteration=self.best_iteration), dtype=np.float32
        )
        for j, booster in self.product_boosters.items():
            rows = cols == j
            if rows.any():
                out[rows] = np.asarray(booster.predict(inputs[rows]), dtype=np.float32)
        return out

    def propensity(
        self, features: pd.DataFrame, history: sp.csr_matrix, held: sp.csr_matrix
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Propensity customers × products (NaN where not a candidate) and recommender scores.

        Customers are processed in blocks, so memory stays flat for any number of them.
        """
        if self.booster is None:
            raise ValueError("the ranker is not trained")
        n = len(features)
        out = np.full((n, len(self.products)), np.nan, dtype=np.float32)
        all_scores: dict[str, np.ndarray] = {
            name: np.empty((n, len(self.products)), dtype=np.float32) for name in self.recommenders
        }
        for start in range(0, n, SCORE_BLOCK_ROWS):
            stop = min(start + SCORE_BLOCK_ROWS, n)
            block = features.iloc[start:stop]
            scores = self.recommender_scores(block, history[start:stop])
            mask = shortlist(
                candidate_mask(held[start:stop], self.products), scores, self.shortlist_per_model
            )
            inputs, rows, cols = candidate_matrix(
                block, self.products, mask, scores, self.levels, self.inputs, held[start:stop]
            )
            if len(rows):
                out[start + rows, cols] = self.predict_rows(inputs, cols)
            for name, values in scores.items():
                all_scores[name][start:stop] = values
        return out, all_scores

    def importance(self) -> dict[str, float]:
        """Gain importance of every ranker input, normalised to sum to 1."""
        if self.booster is None:
            return {}
        gains = self.booster.feature_importance(importance_type="gain")
        total = float(gains.sum()) or 1.0
        pairs = sorted(
            zip(self.booster.feature_name(), gains, strict=True), key=lambda p: -float(p[1])
        )
        return {str(name): round(float(gain) / total, 6) for name, gain in pairs}

    def save(self, directory: Path) -> None:
        """Write the model as JSON, npz and LightGBM text files (no pickles)."""
        if self.booster is None:
            raise ValueError("the ranker is not trained")
        directory.mkdir(parents=True, exist_ok=True)
        for name, model in self.recommenders.items():
            model.save(directory / "recommenders" / name)
        self.booster.save_model(str(directory / "ranker.txt"), num_iteration=self.best_iteration)
        for j, booster in self.product_boosters.items():
            booster.save_model(str(directory / f"ranker-product-{j}.txt"))
        meta = {
            "format_version": FORMAT_VERSION,
            "products": self.products.to_dict(),
            "recommenders": list(self.recommenders),
            "levels": self.levels,
            "params": self.params,
            "best_iteration": self.best_iteration,
            "shortlist_per_model": self.shortlist_per_model,
            "inputs": self.inputs.to_dict(),
            "product_boosters": sorted(self.product_boosters),
            "importance": self.importance(),
            "meta": self.meta,
        }
        (directory / "offer_model.json").write_text(json.dumps(meta, indent=2, default=str))

    @classmethod
    def load(cls, directory: Path) -> OfferModel:
        """Read a model written by `save`."""
        meta = json.loads((directory / "offer_model.json").read_text())
        if meta["format_version"] not in _READABLE_FORMATS:
            raise ValueError(f"{directory}: unsupported offer model format")
        recommenders = {
            name: load_recommender(directory / "recommenders" / name)
            for name in meta["recommenders"]
        }
        booster = lgb.Booster(model_file=str(directory / "ranker.txt"))
        return cls(
            products=ProductTable.from_dict(meta["products"]),
            recommenders=recommenders,
            levels=meta["levels"],
            params=meta["params"],
            booster=booster,
            best_iteration=booster.current_iteration(),
            meta=meta["meta"],
            shortlist_per_model=int(meta.get("shortlist_per_model", 0)),
            inputs=RankerInputs.from_dict(meta["inputs"]) if "inputs" in meta else RankerInputs(),
            product_boosters={
                int(j): lgb.Booster(model_file=str(directory / f"ranker-product-{j}.txt"))
                for j in meta.get("product_boosters", [])
            },
        )


def _groups(features: pd.DataFrame) -> np.ndarray:
    """Segment ids as the recommenders' user groups (-1 where unknown)."""
    values = pd.to_numeric(features["segment_id"], errors="coerce").fillna(-1)
    return values.to_numpy(dtype=np.int64)
