"""Offline evaluation of the recommenders on any interactions CSV (MovieLens-style or ours)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
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
from nextoffer.models.catalog import RECOMMENDERS, make_recommender, search_grid
from nextoffer.pipelines.base import Say, silent

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

    data: dict[str, Any]
    metrics: dict[str, dict[str, float]]
    chosen: dict[str, dict[str, Any]]
    validation: dict[str, list[dict[str, Any]]]
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the `--json` output), where `chosen` is named `chosen_params`."""
        return {"chosen_params" if k == "chosen" else k: v for k, v in asdict(self).items()}


def read_interactions(path: Path, config: RecommenderEvaluationConfig) -> pd.DataFrame:
    """Read the CSV and check the columns the configuration uses; rows with a missing id go.

    Raises `InputError` with one line naming the problem: an unreadable file, a missing
    column, a non-numeric rating where ratings are used, or times that are missing or not
    numbers/dates where the split uses them. Text times are parsed as dates.
    """
    frame = _read_csv(path)
    time_used = config.time_col is not None and (
        config.split == "time" or (config.split == "leave_one_out" and config.time_col in frame)
    )
    rating_used = config.weights == "rating" or config.min_rating is not None
    missing = [c for c in (config.user_col, config.item_col) if c not in frame.columns]
    if config.split == "time" and (config.time_col is None or config.time_col not in frame):
        missing.append(f"{config.time_col or '--time-col'} (needed by the time split)")
    if rating_used and (config.rating_col is None or config.rating_col not in frame):
        missing.append(f"{config.rating_col or '--rating-col'} (needed for ratings)")
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(frame.columns)}"
        )
    needed = [config.user_col, config.item_col]
    needed += [c for c in (config.rating_col, config.time_col) if c and c in frame.columns]
    frame = frame[needed].dropna(subset=[config.user_col, config.item_col]).copy()
    if rating_used and config.rating_col is not None:
        frame[config.rating_col] = _numeric_ratings(path, frame[config.rating_col])
    if time_used and config.time_col is not None:
        frame[config.time_col] = _times(path, frame[config.time_col])
    if config.min_rating is not None and config.rating_col is not None:
        frame = frame[frame[config.rating_col] >= config.min_rating]
    if frame.empty:
        raise InputError(f"{path}: no interactions left to evaluate")
    return frame.reset_index(drop=True)


def _read_csv(path: Path) -> pd.DataFrame:
    """The file as a DataFrame, or an `InputError` saying in one line why it cannot be read."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a CSV file")
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: the file is empty") from None
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split())
        raise InputError(f"{path}: cannot read as CSV: {reason}") from None


def _numeric_ratings(path: Path, ratings: pd.Series) -> pd.Series:
    """`ratings` as floats; `InputError` naming a few values that are not numbers."""
    as_numbers = pd.to_numeric(ratings, errors="coerce")
    bad = ratings[as_numbers.isna() & ratings.notna()]
    if not bad.empty:
        shown = ", ".join(repr(v) for v in bad.drop_duplicates().head(5))
        raise InputError(
            f"{path}: rating column {ratings.name!r} must hold numbers; "
            f"{len(bad)} rows do not, e.g. {shown}"
        )
    return as_numbers.astype(float)


def _times(path: Path, times: pd.Series) -> pd.Series:
    """Numeric or date times, complete; text is parsed as dates. `InputError` otherwise."""
    if times.isna().any():
        raise InputError(
            f"{path}: time column {times.name!r} has {int(times.isna().sum())} missing values"
        )
    if pd.api.types.is_numeric_dtype(times) or pd.api.types.is_datetime64_any_dtype(times):
        return times
    try:
        return pd.to_datetime(times, format="mixed")
    except (ValueError, TypeError, OverflowError):
        shown = ", ".join(repr(v) for v in times.drop_duplicates().head(3))
        raise InputError(
            f"{path}: time column {times.name!r} holds neither numbers nor dates, e.g. {shown}"
        ) from None


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
    progress: Say | None = None,
) -> RecommenderEvaluation:
    """Split, tune on a validation split of train, refit on train, score the test split.

    All test items of a user are relevant; items the user has in train are never
    recommended. Metrics follow Microsoft Recommenders' definitions (docs/evaluation.md).
    """
    say = progress or silent
    unknown = [m for m in config.models if m not in RECOMMENDERS]
    if unknown:
        raise InputError(
            f"unknown model(s) {', '.join(map(repr, unknown))}; known: {', '.join(RECOMMENDERS)}"
        )
    if not config.models:
        raise InputError(f"no model to evaluate; known: {', '.join(RECOMMENDERS)}")
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
    result = RecommenderEvaluation(data, {}, {}, {})
    for name in config.models:
        started = time.perf_counter()
        grid = search_grid(name, len(items)) if config.tune else [{}]
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
