"""Implicit-feedback matrix factorisation (ALS) through the `implicit` library, CPU build."""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

import numpy as np
import scipy.sparse as sp
from scipy.linalg.blas import saxpy
from scipy.linalg.lapack import sposv

from nextoffer.models.base import Interactions, Recommender
from nextoffer.models.popularity import as_history, fill_empty_rows, popularity_share

if TYPE_CHECKING:
    from implicit.cpu.als import (  # type: ignore[import-untyped, unused-ignore]
        AlternatingLeastSquares,
    )


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
    previous item factors), so their scores differ from those. Scoring does not import
    implicit: `solve_users` repeats its solver's BLAS and LAPACK calls (see there).

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
        # Score without implicit (`solve_users`); the lean serving model sets it.
        self.portable = False
        self._initial: np.ndarray | None = None
        self._solver: AlternatingLeastSquares | None = None

    def _implicit_model(self) -> AlternatingLeastSquares:
        """An implicit ALS model with this model's settings (and item factors, once fitted)."""
        from implicit.cpu.als import AlternatingLeastSquares

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
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"):
            model = self._implicit_model()
            model.fit(sp.csr_matrix(data.matrix, dtype=np.float32), show_progress=False)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self._initial = self._solver = None
        return self

    def user_factors(self, history: sp.csr_matrix) -> np.ndarray:
        """Factors (float32, rows × factors) for history rows; zeros for empty rows.

        Solved by implicit's `recalculate_user`, or with `portable` set (the lean serving
        model: no implicit import) by `solve_users`, which gives the same bits.
        """
        rows = as_history(history, self.n_items)
        if rows.shape[0] == 0:
            return np.zeros((0, self.params["factors"]), dtype=np.float32)
        rows = sp.csr_matrix(rows, dtype=np.float32)
        if self.portable:
            if self._initial is None:
                # YᵀY + λI, as implicit's solver starts every user (float32 throughout).
                y = self.item_factors
                eye = np.eye(self.params["factors"], dtype=np.float32)
                self._initial = y.T.dot(y) + self.params["regularization"] * eye
            return solve_users(self._initial, self.item_factors, self.params["alpha"] * rows)
        if self._solver is None:
            from threadpoolctl import threadpool_limits

            # implicit's recalculate_user needs only the item factors and the settings, so a
            # model rebuilt from saved factors takes the library's own code path.
            with threadpool_limits(1, "blas"):
                solver = self._implicit_model()
            solver.item_factors = self.item_factors
            self._solver = solver
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
        self._initial = self._solver = None


def solve_users(initial: np.ndarray, items: np.ndarray, confidences: sp.csr_matrix) -> np.ndarray:
    """x_u = (YᵀC_uY + λI)⁻¹ YᵀC_u p_u per row of `confidences`, exactly as implicit solves it.

    implicit's `recalculate_user` (cpu/_als.pyx, `_least_squares`) builds A and b with
    `saxpy` calls and solves with `sposv`, through scipy's BLAS and LAPACK; the same calls
    here, on the same memory layout, give bit-identical factors without importing implicit.
    """
    n = initial.shape[0]
    out = np.zeros((confidences.shape[0], n), dtype=np.float32)
    data = confidences.data.astype(np.float32)
    for u in range(confidences.shape[0]):
        start, stop = confidences.indptr[u], confidences.indptr[u + 1]
        if start == stop:
            continue
        a = initial.copy()
        flat = a.reshape(-1)
        b = np.zeros(n, dtype=np.float32)
        for index in range(start, stop):
            y = items[confidences.indices[index]]
            confidence = data[index]
            if confidence > 0:
                b = saxpy(y, b, a=confidence)
            else:
                confidence = -confidence
            # A's row j += (c - 1)·y_j · y: one saxpy per row, as implicit does.
            scales = (confidence - np.float32(1.0)) * y
            for j in range(n):
                flat = saxpy(y, flat, n=n, a=scales[j], offy=j * n)
        # implicit hands its row-major A to column-major LAPACK as is: A's transpose here.
        _, x, info = sposv(flat.reshape(n, n).T, b, lower=0)
        if info != 0:
            raise ValueError(f"sposv failed (info={info}) on row {u}; raise regularization")
        out[u] = x
    return out
