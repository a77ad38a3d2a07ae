"""The one interface every recommender implements: fit, score, recommend, save, load."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp

FORMAT_VERSION = 1
MODEL_FILE = "model.json"
ARRAYS_FILE = "arrays.npz"
# Scores are computed for blocks of users so memory stays flat: at most this many cells.
BLOCK_CELLS = 1 << 24


@dataclass(frozen=True)
class Interactions:
    """Who interacted with what: a users × items sparse matrix of positive weights.

    `user_groups` optionally gives each row a group (a customer segment); -1 means unknown.
    Row and column positions are the ids; mapping them to customer and product ids is the
    caller's job.
    """

    matrix: sp.csr_matrix
    user_groups: np.ndarray | None = None

    @property
    def n_users(self) -> int:
        """Number of user rows."""
        return int(self.matrix.shape[0])

    @property
    def n_items(self) -> int:
        """Number of item columns."""
        return int(self.matrix.shape[1])


class Recommender(ABC):
    """A model that scores every item for a user from the user's interaction history.

    Subclasses implement `fit`, `score_block`, `_arrays`/`_from_arrays` and set `name`.
    `recommend` and persistence are shared. Saved models are a JSON file plus an `.npz`
    read with `allow_pickle=False`: loading a model never executes code.
    """

    name: ClassVar[str]

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Any] = params
        self.n_items = 0

    @abstractmethod
    def fit(self, data: Interactions) -> Self:
        """Learn from `data`; returns self."""

    @abstractmethod
    def score_block(self, history: sp.csr_matrix, groups: np.ndarray | None) -> np.ndarray:
        """Dense float32 scores (len(history) × n_items) for a block of users; higher is better."""

    @abstractmethod
    def _arrays(self) -> dict[str, np.ndarray]:
        """The learned state as named numeric arrays."""

    @abstractmethod
    def _from_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore the learned state saved by `_arrays`."""

    def recommend(
        self,
        history: sp.csr_matrix,
        k: int,
        groups: np.ndarray | None = None,
        exclude_seen: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items per user: (items int32 n×k, scores float32 n×k), best first.

        Seen items (non-zero in `history`) are excluded unless `exclude_seen` is false. Where
        fewer than k items are left, the row is padded with item -1 and score -inf.
        """
        history = sp.csr_matrix(history)
        n_users = history.shape[0]
        k_eff = min(k, self.n_items)
        items = np.full((n_users, k), -1, dtype=np.int32)
        scores = np.full((n_users, k), -np.inf, dtype=np.float32)
        block = max(1, BLOCK_CELLS // max(self.n_items, 1))
        for start in range(0, n_users, block):
            stop = min(start + block, n_users)
            rows = history[start:stop]
            block_scores = self.score_block(rows, None if groups is None else groups[start:stop])
            block_scores = np.asarray(block_scores, dtype=np.float32)
            if exclude_seen:
                seen_rows, seen_cols = rows.nonzero()
                block_scores[seen_rows, seen_cols] = -np.inf
            top = _top_k(block_scores, k_eff)
            top_scores = np.take_along_axis(block_scores, top, axis=1)
            top[~np.isfinite(top_scores)] = -1
            items[start:stop, :k_eff] = top
            scores[start:stop, :k_eff] = top_scores
        return items, scores

    def save(self, directory: Path) -> None:
        """Write the model to `directory` (created if missing)."""
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "name": self.name,
            "format_version": FORMAT_VERSION,
            "n_items": self.n_items,
            "params": self.params,
        }
        (directory / MODEL_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        # Typed as Any: numpy's stub reads ** arrays as if they could fill `allow_pickle`.
        arrays: dict[str, Any] = self._arrays()
        np.savez_compressed(directory / ARRAYS_FILE, **arrays)

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Read a model written by `save` of this class."""
        meta = json.loads((directory / MODEL_FILE).read_text())
        if meta["name"] != cls.name:
            raise ValueError(f"{directory} holds a {meta['name']!r} model, not {cls.name!r}")
        if meta["format_version"] != FORMAT_VERSION:
            raise ValueError(f"{directory}: unsupported model format {meta['format_version']}")
        model = cls(**meta["params"])
        model.n_items = int(meta["n_items"])
        with np.load(directory / ARRAYS_FILE, allow_pickle=False) as saved:
            model._from_arrays({key: saved[key] for key in saved.files})
        return model


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k highest scores per row, best first (ties: lower index first)."""
    if k <= 0:
        return np.empty((scores.shape[0], 0), dtype=np.int32)
    # NaN would break the comparisons below; rank it like -inf (recommend then drops it).
    keys = np.where(np.isnan(scores), -np.inf, scores) if np.isnan(scores).any() else scores
    if k < scores.shape[1]:
        part = np.argpartition(-keys, k - 1, axis=1)[:, :k]
        # argpartition settles ties at the k-th place arbitrarily. In rows where an item tied
        # with the k-th score was left out, keep everything above that score, then the
        # lowest-indexed tied items, so ties go to lower indices as documented.
        part_keys = np.take_along_axis(keys, part, axis=1)
        kth = part_keys.min(axis=1, keepdims=True)
        tied = keys == kth
        loose = np.flatnonzero(np.count_nonzero(tied, axis=1) > (part_keys == kth).sum(axis=1))
        if loose.size:
            above = keys[loose] > kth[loose]
            room = k - above.sum(axis=1, keepdims=True)
            rank = np.cumsum(tied[loose], axis=1, dtype=np.int32)
            chosen = above | (tied[loose] & (rank <= room))
            part[loose] = np.nonzero(chosen)[1].reshape(loose.size, k)
    else:
        part = np.tile(np.arange(scores.shape[1]), (scores.shape[0], 1))
    order = np.lexsort((part, -np.take_along_axis(keys, part, axis=1)), axis=1)
    return np.take_along_axis(part, order, axis=1).astype(np.int32)
