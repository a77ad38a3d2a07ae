"""EASE (Steck 2019): a closed-form linear item–item model with a zero diagonal."""

from __future__ import annotations

from typing import Self

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from nextoffer.models.base import BLOCK_CELLS, Interactions, Recommender
from nextoffer.models.popularity import as_history, binarise, fill_empty_rows, popularity_share


class EASERecommender(Recommender):
    """Embarrassingly Shallow Autoencoder: score = history @ B.

    With X the binarised user × item matrix, P = (XᵀX + λI)⁻¹ and B_ij = -P_ij / P_jj with a
    zero diagonal (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", 2019), λ
    being `regularization`. The history is binarised the same way when scoring. Users with
    an empty history get the items' popularity share.

    B is dense items × items by nature: it is meant for catalogues up to ~20 000 items.
    Fitting holds about 12 bytes per cell at its peak (the float64 Gram matrix inverted in
    place, then B as float32): 4.8 GB at 20 000 items, which is why `fit` refuses catalogues
    larger than `max_items`. Use item_knn or als above that.
    """

    name = "ease"

    def __init__(self, *, regularization: float = 500.0, max_items: int = 20_000) -> None:
        if float(regularization) <= 0:
            raise ValueError(f"regularization must be positive, got {regularization}")
        if int(max_items) < 1:
            raise ValueError(f"max_items must be at least 1, got {max_items}")
        super().__init__(regularization=float(regularization), max_items=int(max_items))
        self.weights = np.zeros((0, 0), dtype=np.float32)
        self.popularity = np.zeros(0, dtype=np.float32)

    def fit(self, data: Interactions) -> Self:
        """Solve for B in closed form."""
        if data.n_items > self.params["max_items"]:
            raise ValueError(
                f"EASE holds a dense items × items matrix; {data.n_items} items is above "
                f"max_items={self.params['max_items']} (use item_knn or als, or raise max_items "
                "if the machine has the memory)"
            )
        self.n_items = data.n_items
        self.popularity = popularity_share(data.matrix)
        ones = binarise(data.matrix).astype(np.float64)
        items_users, by_item = ones.T.tocsr(), ones.tocsc()
        gram = np.empty((self.n_items, self.n_items), dtype=np.float64)
        # Filled by column blocks: XᵀX as one sparse product can take more memory than dense.
        block = max(1, BLOCK_CELLS // max(self.n_items, 1))
        for start in range(0, self.n_items, block):
            stop = min(start + block, self.n_items)
            gram[:, start:stop] = (items_users @ by_item[:, start:stop]).toarray()
        gram[np.diag_indices_from(gram)] += self.params["regularization"]
        # Inverted in place: the Gram matrix is the biggest allocation, so avoid a second one.
        # LAPACK works on Fortran order, which the transposed view is; symmetry makes it the
        # same matrix, and the inverse's transpose the same inverse.
        precision = scipy.linalg.inv(gram.T, overwrite_a=True, check_finite=False).T
        diagonal = np.diag(precision).copy()
        precision /= -diagonal[None, :]
        precision[np.diag_indices_from(precision)] = 0.0
        self.weights = precision.astype(np.float32)
        return self

    def score_block(self, history: sp.csr_matrix, groups: np.ndarray | None) -> np.ndarray:
        """Scores history @ B; users with no history get the popularity share."""
        rows = as_history(history, self.n_items)
        scores = np.asarray(binarise(rows) @ self.weights, dtype=np.float32)
        return fill_empty_rows(scores, rows, self.popularity)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights, "popularity": self.popularity}

    def _from_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.weights = arrays["weights"].astype(np.float32)
        self.popularity = arrays["popularity"].astype(np.float32)
