"""Bayesian personalised ranking (BPR) matrix factorisation through `implicit`, CPU build."""

from __future__ import annotations

from typing import Self

import numpy as np
import scipy.sparse as sp

from nextoffer.models.base import Interactions, Recommender
from nextoffer.models.popularity import as_history, fill_empty_rows, popularity_share


class BPRRecommender(Recommender):
    """Rendle et al.'s BPR: item factors learnt so that held items outrank the others.

    implicit learns user and item factors (the item factors' last column is a bias, the
    users' a constant 1). Only the item factors are kept: a customer is scored by folding
    their history in as the mean of the factors of the items they hold, plus each item's
    bias, so training customers and new ones are scored the same way (implicit cannot
    recompute a BPR user from a history row). Empty histories get the popularity share.
    Deterministic for a given `seed` with `num_threads=1`.
    """

    name = "bpr"

    def __init__(
        self,
        *,
        factors: int = 32,
        learning_rate: float = 0.05,
        regularization: float = 0.01,
        iterations: int = 100,
        seed: int = 42,
        num_threads: int = 1,
    ) -> None:
        if int(factors) < 1 or int(iterations) < 1:
            raise ValueError(f"factors and iterations must be at least 1: {factors}, {iterations}")
        if float(learning_rate) <= 0 or float(regularization) < 0:
            raise ValueError(
                f"learning_rate must be positive and regularization not negative: "
                f"{learning_rate}, {regularization}"
            )
        if int(num_threads) < 0:
            raise ValueError(f"num_threads must not be negative, got {num_threads}")
        super().__init__(
            factors=int(factors),
            learning_rate=float(learning_rate),
            regularization=float(regularization),
            iterations=int(iterations),
            seed=int(seed),
            num_threads=int(num_threads),
        )
        self.item_factors = np.zeros((0, int(factors)), dtype=np.float32)
        self.item_bias = np.zeros(0, dtype=np.float32)
        self.popularity = np.zeros(0, dtype=np.float32)

    def fit(self, data: Interactions) -> Self:
        """Learn item factors and biases from the interactions."""
        self.n_items = data.n_items
        self.popularity = popularity_share(data.matrix)
        # Imported here: scoring needs only the factors, and serving never fits.
        from implicit.cpu.bpr import (  # type: ignore[import-untyped, unused-ignore]
            BayesianPersonalizedRanking,
        )
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"):
            model = BayesianPersonalizedRanking(
                factors=self.params["factors"],
                learning_rate=self.params["learning_rate"],
                regularization=self.params["regularization"],
                iterations=self.params["iterations"],
                num_threads=self.params["num_threads"],
                random_state=self.params["seed"],
            )
            model.fit(sp.csr_matrix(data.matrix, dtype=np.float32), show_progress=False)
        factors = np.asarray(model.item_factors, dtype=np.float32)
        # implicit appends a bias column to the item factors (and a 1 to the users').
        self.item_factors = np.ascontiguousarray(factors[:, :-1])
        self.item_bias = np.ascontiguousarray(factors[:, -1])
        return self

    def score_block(self, history: sp.csr_matrix, groups: np.ndarray | None) -> np.ndarray:
        """Mean item factors of each customer's history · item factors, plus item bias."""
        rows = sp.csr_matrix(as_history(history, self.n_items), dtype=np.float32)
        counts = np.asarray(rows.sum(axis=1), dtype=np.float32).ravel()
        users = np.asarray(rows @ self.item_factors, dtype=np.float32)
        users /= np.maximum(counts, 1.0)[:, None]
        scores = np.asarray(users @ self.item_factors.T + self.item_bias[None, :], np.float32)
        return fill_empty_rows(scores, rows, self.popularity)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            "item_factors": self.item_factors,
            "item_bias": self.item_bias,
            "popularity": self.popularity,
        }

    def _from_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.item_factors = np.ascontiguousarray(arrays["item_factors"], dtype=np.float32)
        self.item_bias = arrays["item_bias"].astype(np.float32)
        self.popularity = arrays["popularity"].astype(np.float32)
