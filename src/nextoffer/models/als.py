"""Implicit-feedback matrix factorisation (ALS) through the `implicit` library, CPU build."""

from __future__ import annotations

from typing import Self

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import (  # type: ignore[import-untyped, unused-ignore]
    AlternatingLeastSquares,
)
from threadpoolctl import threadpool_limits

from nextoffer.models.base import Interactions, Recommender
from nextoffer.models.popularity import as_history, fill_empty_rows, popularity_share


class ALSRecommender(Recommender):
    """Hu, Koren & Volinsky implicit ALS: score = user factors · item factors.

    The interaction weights times `alpha` are the confidences (implicit's own `alpha`, which
    scales the matrix before fitting). Only user-independent state is kept: the item
    factors Y (plus the popularity share used for users with an empty history). A user's
    factors are recomputed from whatever history row is scored, training user or not, by
    the exact ALS least-squares step implicit itself uses (`recalculate_user`):

        x_u = (YᵀY + Yᵀ(C_u − I)Y + λI)⁻¹ Yᵀ C_u p_u

    where C_u is diagonal with c_ui = α·r_ui on the user's items and 1 elsewhere, p_u is 1
    on the user's items and 0 elsewhere, and λ is `regularization`. Training users are
    scored the same way (from their history, against the final item factors), not with the
    user factors implicit stores at the end of fitting (conjugate-gradient steps against the
    previous item factors), so their scores differ from those.

    Deterministic for a given `seed`; `num_threads` (0: all cores) is implicit's thread
    count for fitting and scoring, 1 by default because threads fight on shared machines.
    """

    name = "als"

    def __init__(
        self,
        *,
        factors: int = 64,
        regularization: float = 0.05,
        iterations: int = 15,
        alpha: float = 10.0,
        seed: int = 42,
        num_threads: int = 1,
    ) -> None:
        if int(factors) < 1 or int(iterations) < 1:
            raise ValueError(f"factors and iterations must be at least 1: {factors}, {iterations}")
        if float(regularization) <= 0 or float(alpha) <= 0:
            raise ValueError(
                f"regularization and alpha must be positive: {regularization}, {alpha}"
            )
        if int(num_threads) < 0:
            raise ValueError(f"num_threads must not be negative, got {num_threads}")
        super().__init__(
            factors=int(factors),
            regularization=float(regularization),
            iterations=int(iterations),
            alpha=float(alpha),
            seed=int(seed),
            num_threads=int(num_threads),
        )
        self.item_factors = np.zeros((0, int(factors)), dtype=np.float32)
        self.popularity = np.zeros(0, dtype=np.float32)
        self._solver: AlternatingLeastSquares | None = None

    def _implicit_model(self) -> AlternatingLeastSquares:
        """An implicit ALS model with this model's settings (and item factors, once fitted)."""
        return AlternatingLeastSquares(
            factors=self.params["factors"],
            regularization=self.params["regularization"],
            alpha=self.params["alpha"],
            dtype=np.float32,
            iterations=self.params["iterations"],
            num_threads=self.params["num_threads"],
            random_state=self.params["seed"],
        )

    def fit(self, data: Interactions) -> Self:
        """Factorise the interactions; keep the item factors."""
        self.n_items = data.n_items
        self.popularity = popularity_share(data.matrix)
        # implicit parallelises itself; a multi-threaded BLAS underneath oversubscribes the
        # cores (implicit checks, and warns, when the model is made), so BLAS runs
        # single-threaded while implicit works.
        with threadpool_limits(1, "blas"):
            model = self._implicit_model()
            model.fit(sp.csr_matrix(data.matrix, dtype=np.float32), show_progress=False)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self._solver = None
        return self

    def user_factors(self, history: sp.csr_matrix) -> np.ndarray:
        """Factors (float32, rows × factors) for history rows; zeros for empty rows."""
        rows = as_history(history, self.n_items)
        if self._solver is None:
            # implicit's recalculate_user needs only the item factors and the settings, so a
            # model rebuilt from saved factors takes the library's own code path.
            with threadpool_limits(1, "blas"):
                solver = self._implicit_model()
            solver.item_factors = self.item_factors
            self._solver = solver
        if rows.shape[0] == 0:
            return np.zeros((0, self.params["factors"]), dtype=np.float32)
        rows = sp.csr_matrix(rows, dtype=np.float32)
        factors = self._solver.recalculate_user(np.arange(rows.shape[0]), rows)
        return np.asarray(factors, dtype=np.float32)

    def score_block(self, history: sp.csr_matrix, groups: np.ndarray | None) -> np.ndarray:
        """Recompute the users' factors from their history and take dot products."""
        rows = as_history(history, self.n_items)
        scores = np.asarray(self.user_factors(rows) @ self.item_factors.T, dtype=np.float32)
        return fill_empty_rows(scores, rows, self.popularity)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"item_factors": self.item_factors, "popularity": self.popularity}

    def _from_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.item_factors = np.ascontiguousarray(arrays["item_factors"], dtype=np.float32)
        self.popularity = arrays["popularity"].astype(np.float32)
        self._solver = None
