"""Item-based nearest neighbours: cosine item–item similarity, pruned and kept sparse."""

from __future__ import annotations

from typing import Self

import numpy as np
import scipy.sparse as sp

from nextoffer.models.base import BLOCK_CELLS, Interactions, Recommender
from nextoffer.models.popularity import as_history, binarise, fill_empty_rows, popularity_share


class ItemKNNRecommender(Recommender):
    """Scores items by their summed similarity to the items in the user's history.

    S_ij = x_i·x_j / (‖x_i‖·‖x_j‖ + shrink) over the item columns of the user × item matrix
    (binarised unless `binarise` is false, in which case the interaction weights are used,
    and the history is weighted the same way when scoring). The diagonal is dropped and each
    column j keeps only its `neighbours` most similar items i, so score_j = Σ_i h_i·S_ij is
    summed over j's nearest neighbours. S is built column block by column block from the
    sparse matrix and stays sparse: memory grows with items × neighbours, never items².
    Only positive similarities are kept. Users with an empty history get the items'
    popularity share.
    """

    name = "item_knn"

    def __init__(
        self, *, neighbours: int = 100, shrink: float = 0.0, binarise: bool = True
    ) -> None:
        if int(neighbours) < 1:
            raise ValueError(f"neighbours must be at least 1, got {neighbours}")
        if float(shrink) < 0:
            raise ValueError(f"shrink must not be negative, got {shrink}")
        super().__init__(neighbours=int(neighbours), shrink=float(shrink), binarise=bool(binarise))
        self.similarity = sp.csr_matrix((0, 0), dtype=np.float32)
        self.popularity = np.zeros(0, dtype=np.float32)

    def _weights(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        if self.params["binarise"]:
            return binarise(matrix)
        return sp.csr_matrix(matrix, dtype=np.float32)

    def fit(self, data: Interactions) -> Self:
        """Build the pruned sparse similarity matrix."""
        self.n_items = n_items = data.n_items
        self.popularity = popularity_share(data.matrix)
        weights = self._weights(data.matrix).astype(np.float64)
        items_users = weights.T.tocsr()
        by_item = weights.tocsc()
        norms = np.sqrt(np.asarray(weights.multiply(weights).sum(axis=0)).ravel())
        keep = self.params["neighbours"]
        shrink = self.params["shrink"]
        # A column block of XᵀX has at most items × block cells, so a block of
        # BLOCK_CELLS // items columns bounds memory even when the co-occurrences are dense.
        block = max(1, BLOCK_CELLS // max(n_items, 1))
        parts: list[sp.csc_matrix] = []
        for start in range(0, n_items, block):
            stop = min(start + block, n_items)
            gram = sp.csc_matrix(items_users @ by_item[:, start:stop])
            gram.sum_duplicates()
            parts.append(_prune_columns(gram, start, norms, shrink, keep))
        if parts:
            similarity = sp.hstack(parts, format="csr", dtype=np.float32)
        else:
            similarity = sp.csr_matrix((n_items, n_items), dtype=np.float32)
        similarity.sort_indices()
        self.similarity = similarity
        return self

    def score_block(self, history: sp.csr_matrix, groups: np.ndarray | None) -> np.ndarray:
        """Scores history @ S; users with no history get the popularity share."""
        rows = as_history(history, self.n_items)
        scores = np.asarray((self._weights(rows) @ self.similarity).toarray(), dtype=np.float32)
        return fill_empty_rows(scores, rows, self.popularity)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            "similarity_data": self.similarity.data.astype(np.float32),
            "similarity_indices": self.similarity.indices.astype(np.int64),
            "similarity_indptr": self.similarity.indptr.astype(np.int64),
            "popularity": self.popularity,
        }

    def _from_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.similarity = sp.csr_matrix(
            (
                arrays["similarity_data"].astype(np.float32),
                arrays["similarity_indices"],
                arrays["similarity_indptr"],
            ),
            shape=(self.n_items, self.n_items),
        )
        self.popularity = arrays["popularity"].astype(np.float32)


def _prune_columns(
    gram: sp.csc_matrix, first_column: int, norms: np.ndarray, shrink: float, keep: int
) -> sp.csc_matrix:
    """Cosine-normalise a column block of XᵀX, drop the diagonal, keep `keep` per column."""
    n_rows, n_cols = gram.shape
    columns = np.repeat(np.arange(n_cols), np.diff(gram.indptr))
    rows = gram.indices
    values = gram.data / (norms[rows] * norms[first_column + columns] + shrink)
    wanted = (rows != first_column + columns) & (values > 0) & np.isfinite(values)
    rows, columns, values = rows[wanted], columns[wanted], values[wanted]
    # Best first within each column (ties: lower item index), then the first `keep` of each.
    order = np.lexsort((rows, -values, columns))
    rows, columns, values = rows[order], columns[order], values[order]
    column_start = np.searchsorted(columns, np.arange(n_cols))
    rank = np.arange(columns.size) - column_start[columns]
    top = rank < keep
    return sp.csc_matrix(
        (values[top].astype(np.float32), (rows[top], columns[top])), shape=(n_rows, n_cols)
    )
