"""Popularity baselines: global item popularity and popularity within customer segments."""

from __future__ import annotations

from typing import Self

import numpy as np
import scipy.sparse as sp

from nextoffer.models.base import Interactions, Recommender


def as_history(history: sp.spmatrix | sp.sparray, n_items: int) -> sp.csr_matrix:
    """`history` as a CSR matrix, checked to have one column per item of the model."""
    # Already CSR (scoring's usual case): no copy, which costs more than a one-row score.
    matrix = history if isinstance(history, sp.csr_matrix) else sp.csr_matrix(history)
    if matrix.shape[1] != n_items:
        raise ValueError(f"history has {matrix.shape[1]} item columns, the model has {n_items}")
    return matrix


def binarise(matrix: sp.spmatrix | sp.sparray) -> sp.csr_matrix:
    """A float32 copy of `matrix` with 1 wherever it holds a non-zero value."""
    ones = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    # Duplicates would otherwise count twice, stored zeros once.
    ones.sum_duplicates()
    ones.eliminate_zeros()
    ones.data[:] = 1.0
    return ones


def user_counts(matrix: sp.spmatrix | sp.sparray) -> np.ndarray:
    """Per item, how many distinct users interacted with it (float64)."""
    ones = binarise(matrix)
    return np.bincount(ones.indices, minlength=ones.shape[1]).astype(np.float64)


def popularity_share(matrix: sp.spmatrix | sp.sparray) -> np.ndarray:
    """Per item, the share of users who interacted with it (float32, 0 for no users)."""
    n_users = max(int(matrix.shape[0]), 1)
    return (user_counts(matrix) / n_users).astype(np.float32)


def fill_empty_rows(scores: np.ndarray, history: sp.csr_matrix, fallback: np.ndarray) -> np.ndarray:
    """Give rows of users with no history the `fallback` scores; returns `scores`.

    History-based models score every item 0 for such a user, which would rank the catalogue
    in index order; the popularity share is a better answer for a brand-new customer.
    """
    empty = np.flatnonzero(np.diff(history.indptr) == 0)
    if empty.size:
        scores[empty] = fallback
    return scores


class PopularityRecommender(Recommender):
    """Scores every item by how many training users interacted with it, for every user.

    Ties go to the lower item index. Takes no hyperparameters.
    """

    name = "popularity"

    def __init__(self) -> None:
        super().__init__()
        self.counts = np.zeros(0, dtype=np.float32)

    def fit(self, data: Interactions) -> Self:
        """Count the users per item."""
        self.n_items = data.n_items
        # float32 holds user counts exactly up to 2**24 (16.7 million users).
        self.counts = user_counts(data.matrix).astype(np.float32)
        return self

    def score_block(self, history: sp.csr_matrix, groups: np.ndarray | None) -> np.ndarray:
        """The same popularity row for every user."""
        rows = as_history(history, self.n_items).shape[0]
        return np.tile(self.counts, (rows, 1))

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts}

    def _from_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.counts = arrays["counts"].astype(np.float32)


class SegmentPopularityRecommender(Recommender):
    """Item popularity within the user's group (segment), shrunk towards global popularity.

    For a group g with n_g training users, of whom c_gi interacted with item i, and p_i the
    share of all training users who interacted with i, the score is the Bayesian average

        score_gi = (c_gi + shrinkage · p_i) / (n_g + shrinkage)

    i.e. the group's share of buyers of i after adding `shrinkage` pseudo-users who behave
    like the whole population: a small group leans to the global share, a large one to its
    own. Users whose group is -1, unseen in training, or had fewer than `min_group_users`
    training users (or when no groups are given) get p_i itself, the same scale. Ties go to
    the lower item index.
    """

    name = "segment_popularity"

    def __init__(self, *, min_group_users: int = 20, shrinkage: float = 50.0) -> None:
        if int(min_group_users) < 1:
            raise ValueError(f"min_group_users must be at least 1, got {min_group_users}")
        if float(shrinkage) < 0:
            raise ValueError(f"shrinkage must not be negative, got {shrinkage}")
        super().__init__(min_group_users=int(min_group_users), shrinkage=float(shrinkage))
        self.global_share = np.zeros(0, dtype=np.float32)
        self.group_ids = np.zeros(0, dtype=np.int64)
        self.group_scores = np.zeros((0, 0), dtype=np.float32)

    def fit(self, data: Interactions) -> Self:
        """Count users per item overall and within each group large enough to trust."""
        self.n_items = data.n_items
        counts = user_counts(data.matrix)
        self.global_share = (counts / max(data.n_users, 1)).astype(np.float32)
        self.group_ids = np.zeros(0, dtype=np.int64)
        self.group_scores = np.zeros((0, self.n_items), dtype=np.float32)
        if data.user_groups is None:
            return self
        groups = np.asarray(data.user_groups).astype(np.int64)
        if groups.shape != (data.n_users,):
            raise ValueError(f"user_groups has shape {groups.shape}, expected ({data.n_users},)")
        ids, sizes = np.unique(groups[groups >= 0], return_counts=True)
        keep = sizes >= self.params["min_group_users"]
        ids, sizes = ids[keep], sizes[keep]
        if ids.size == 0:
            return self
        # Per group, users per item: an indicator (groups × users) times the 0/1 matrix.
        member_rows = np.flatnonzero(np.isin(groups, ids))
        member_group = np.searchsorted(ids, groups[member_rows])
        indicator = sp.csr_matrix(
            (np.ones(member_rows.size), (member_group, member_rows)),
            shape=(ids.size, data.n_users),
        )
        group_counts = (indicator @ binarise(data.matrix)).toarray()
        shrinkage = self.params["shrinkage"]
        scores = (group_counts + shrinkage * counts / max(data.n_users, 1)) / (
            sizes[:, None] + shrinkage
        )
        self.group_ids = ids
        self.group_scores = scores.astype(np.float32)
        return self

    def score_block(self, history: sp.csr_matrix, groups: np.ndarray | None) -> np.ndarray:
        """Each user's group row, or the global share where the group is not modelled."""
        rows = as_history(history, self.n_items).shape[0]
        scores = np.tile(self.global_share, (rows, 1))
        if groups is None or self.group_ids.size == 0:
            return scores
        groups = np.asarray(groups).astype(np.int64)
        if groups.shape != (rows,):
            raise ValueError(f"groups has shape {groups.shape}, expected ({rows},)")
        position = np.minimum(np.searchsorted(self.group_ids, groups), self.group_ids.size - 1)
        known = self.group_ids[position] == groups
        scores[known] = self.group_scores[position[known]]
        return scores

    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            "global_share": self.global_share,
            "group_ids": self.group_ids,
            "group_scores": self.group_scores,
        }

    def _from_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.global_share = arrays["global_share"].astype(np.float32)
        self.group_ids = arrays["group_ids"].astype(np.int64)
        self.group_scores = arrays["group_scores"].astype(np.float32)
