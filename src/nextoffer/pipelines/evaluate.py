"""Offline evaluation of the recommenders on any interactions CSV (MovieLens-style or ours)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from nextoffer.domain.errors import InputError
from nextoffer.evaluation.metrics import ranking_metrics
from nextoffer.evaluation.splits import (
    leave_one_out,
    stratified_split,
    time_cutoff_for_fraction,
    time_split,
)
from nextoffer.models.base import Interactions
from nextoffer.models.catalog import DEFAULT_GRIDS, RECOMMENDERS, make_recommender

SplitKind = Literal["stratified", "time", "leave_one_out"]
WeightKind = Literal["binary", "rating"]


@dataclass(frozen=True)
class RecommenderEvaluationConfig:
    """How to read, split and score an interactions file."""

    user_col: str = "user_id"
    item_col: str = "item_id"
    rating_col: str | None = "rating"
    time_col: str | None = "timestamp"
    split: SplitKind = "stratified"
    ratio: float = 0.75
    seed: int = 42
    k: int = 10
    filter_by: Literal["user", "item"] = "user"
    models: Sequence[str] = tuple(RECOMMENDERS)
    weights: WeightKind = "binary"
    tune: bool = True
    min_rating: float | None = None


@dataclass
class RecommenderEvaluation:
    """Every model's test metrics, the settings chosen on validation, and the data's shape."""

    metrics: dict[str, dict[str, float]]
    chosen: dict[str, dict[str, Any]]
    validation: dict[str, list[dict[str, Any]]]
    data: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the `--json` output)."""
        return {
            "data": self.data,
            "metrics": self.metrics,
            "chosen_params": self.chosen,
            "validation": self.validation,
            "seconds": self.seconds,
        }


def read_interactions(path: Path, config: RecommenderEvaluationConfig) -> pd.DataFrame:
    """Read the CSV and check the named columns exist; rows with a missing id are dropped."""
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read as CSV: {exc}") from None
    needed = [config.user_col, config.item_col]
    needed += [c for c in (config.rating_col, config.time_col) if c and c in frame.columns]
    missing = [c for c in (config.user_col, config.item_col) if c not in frame.columns]
    if config.split == "time" and (config.time_col is None or config.time_col not in frame):
        missing.append(config.time_col or "--time-col")
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(frame.columns)}"
        )
    frame = frame[needed].dropna(subset=[config.user_col, config.item_col])
    if config.min_rating is not None and config.rating_col in frame:
        frame = frame[frame[config.rating_col] >= config.min_rating]
    if frame.empty:
        raise InputError(f"{path}: no interactions left to evaluate")
    return frame.reset_index(drop=True)


def split_interactions(
    frame: pd.DataFrame, config: RecommenderEvaluationConfig
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train/test by the configured protocol."""
    if config.split == "stratified":
        return stratified_split(
            frame,
            ratio=config.ratio,
            seed=config.seed,
            filter_by=config.filter_by,
            user_col=config.user_col,
            item_col=config.item_col,
        )
    if config.split == "time":
        assert config.time_col is not None
        cutoff = time_cutoff_for_fraction(frame[config.time_col], 1.0 - config.ratio)
        return time_split(frame, cutoff, time_col=config.time_col)
    time_col = config.time_col if config.time_col in frame else None
    return leave_one_out(frame, user_col=config.user_col, time_col=time_col, seed=config.seed)


def evaluate_recommenders(
    path: Path,
    config: RecommenderEvaluationConfig,
    progress: Callable[[str], None] | None = None,
) -> RecommenderEvaluation:
    """Split, tune on a validation split of train, refit on train, score the test split.

    All test items of a user are relevant; items the user has in train are never
    recommended. Metrics follow Microsoft Recommenders' definitions (docs/evaluation.md).
    """
    say = progress or (lambda _message: None)
    unknown = [m for m in config.models if m not in RECOMMENDERS]
    if unknown:
        raise InputError(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(RECOMMENDERS)}")
    frame = read_interactions(path, config)
    users = pd.Index(frame[config.user_col].unique())
    items = pd.Index(frame[config.item_col].unique())
    train, test = split_interactions(frame, config)
    fit_part, valid_part = split_interactions(train, config)
    data = {
        "file": str(path),
        "interactions": len(frame),
        "users": len(users),
        "items": len(items),
        "train": len(train),
        "test": len(test),
        "split": config.split,
        "ratio": config.ratio,
        "seed": config.seed,
        "k": config.k,
        "weights": config.weights,
    }
    result = RecommenderEvaluation({}, {}, {}, data)
    for name in config.models:
        started = time.perf_counter()
        grid: list[dict[str, Any]] = DEFAULT_GRIDS[name] if config.tune else [{}]
        rows: list[dict[str, Any]] = []
        if len(grid) > 1:
            say(f"{name}: choosing settings on a validation split of train")
            for params in grid:
                value = _score(name, params, fit_part, valid_part, users, items, config)
                rows.append({"params": params, f"ndcg@{config.k}": value[f"ndcg@{config.k}"]})
            best = max(rows, key=lambda r: r[f"ndcg@{config.k}"])["params"]
        else:
            best = grid[0]
        say(f"{name}: fitting with {best or 'defaults'}")
        result.metrics[name] = _score(name, best, train, test, users, items, config)
        result.chosen[name] = dict(best)
        result.validation[name] = rows
        result.seconds[name] = round(time.perf_counter() - started, 3)
    return result


def _matrix(
    part: pd.DataFrame, users: pd.Index, items: pd.Index, config: RecommenderEvaluationConfig
) -> sp.csr_matrix:
    rows = users.get_indexer(pd.Index(part[config.user_col]))
    cols = items.get_indexer(pd.Index(part[config.item_col]))
    if config.weights == "rating" and config.rating_col in part:
        values = part[config.rating_col].to_numpy(dtype=np.float32)
    else:
        values = np.ones(len(part), dtype=np.float32)
    matrix = sp.csr_matrix((values, (rows, cols)), shape=(len(users), len(items)))
    if config.weights == "binary":
        matrix.data[:] = 1.0
    return matrix


def _score(
    name: str,
    params: dict[str, Any],
    train: pd.DataFrame,
    test: pd.DataFrame,
    users: pd.Index,
    items: pd.Index,
    config: RecommenderEvaluationConfig,
) -> dict[str, float]:
    train_matrix = _matrix(train, users, items, config)
    test_matrix = _matrix(test, users, items, config)
    test_matrix.data[:] = 1.0
    model = make_recommender(name, **params).fit(Interactions(train_matrix))
    evaluated = np.flatnonzero(np.diff(test_matrix.indptr) > 0)
    top, _scores = model.recommend(train_matrix[evaluated], config.k, exclude_seen=True)
    return ranking_metrics(top, test_matrix[evaluated], config.k, len(items))
