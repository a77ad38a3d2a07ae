"""Every recommender by name: construct, load from disk, and the tuning grids."""

from __future__ import annotations

import json
from itertools import product
from pathlib import Path
from typing import Any

from nextoffer.models.als import ALSRecommender
from nextoffer.models.base import MODEL_FILE, Recommender
from nextoffer.models.bpr import BPRRecommender
from nextoffer.models.ease import EASERecommender
from nextoffer.models.item_knn import ItemKNNRecommender
from nextoffer.models.popularity import PopularityRecommender, SegmentPopularityRecommender

# Fitted on recent interactions, not the whole history; they score no one personally.
POPULARITY_KINDS = ("popularity", "segment_popularity")

RECOMMENDERS: dict[str, type[Recommender]] = {
    cls.name: cls
    for cls in (
        PopularityRecommender,
        SegmentPopularityRecommender,
        ItemKNNRecommender,
        EASERecommender,
        ALSRecommender,
        BPRRecommender,
    )
}

# Small grids for choosing settings on a validation split: each model is fitted once per
# entry, so they stay short. The popularity kinds have nothing worth tuning.
DEFAULT_GRIDS: dict[str, list[dict[str, Any]]] = {
    "popularity": [{}],
    "segment_popularity": [{}],
    "item_knn": [{"neighbours": neighbours} for neighbours in (20, 50, 200)],
    "ease": [{"regularization": value} for value in (50.0, 200.0, 500.0, 1000.0, 3000.0)],
    "als": [
        {"factors": factors, "regularization": regularization}
        for factors, regularization in product((8, 16, 32, 64, 128), (0.01, 0.05, 0.2))
    ],
    "bpr": [
        {"factors": factors, "learning_rate": 0.05, "iterations": 100}
        for factors in (8, 16, 32, 64)
    ],
}


def search_grid(name: str, n_items: int, threads: int = 1) -> list[dict[str, Any]]:
    """The settings worth trying for `name` on a catalogue of `n_items`.

    ALS or BPR with as many factors as items just memorises each user's history, so factors
    stay at or below half the catalogue (8 at least); both also get the thread count.
    """
    grid = DEFAULT_GRIDS[name]
    if name not in ("als", "bpr"):
        return grid
    cap = max(n_items // 2, 8)
    return [{**params, "num_threads": threads} for params in grid if params["factors"] <= cap]


def _recommender_class(name: str) -> type[Recommender]:
    try:
        return RECOMMENDERS[name]
    except KeyError:
        known = ", ".join(sorted(RECOMMENDERS))
        raise ValueError(f"unknown recommender {name!r}; known: {known}") from None


def make_recommender(name: str, **params: Any) -> Recommender:
    """A new, unfitted recommender of kind `name` with the given hyperparameters."""
    return _recommender_class(name)(**params)


def load_recommender(directory: Path) -> Recommender:
    """Read a recommender saved with `Recommender.save`, whatever its kind."""
    meta = json.loads((directory / MODEL_FILE).read_text())
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str):
        raise ValueError(f"{directory / MODEL_FILE} does not name a recommender")
    return _recommender_class(name).load(directory)
