"""Train/test splits of interaction tables: stratified, by time, and leave-one-out."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import numpy as np
import pandas as pd

TimeLike = pd.Timestamp | datetime | np.datetime64 | str | int | float


def stratified_split(
    df: pd.DataFrame,
    ratio: float = 0.75,
    seed: int = 42,
    filter_by: Literal["user", "item"] = "user",
    min_rating: int = 1,
    user_col: str = "user_id",
    item_col: str = "item_id",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split each user's (or item's) rows at random: a ``ratio`` share to train, the rest to test.

    Microsoft Recommenders' ``python_stratified_split`` semantics: groups (by ``filter_by``)
    with fewer than ``min_rating`` rows are dropped; each group of n rows is shuffled and the
    rows at shuffled positions r = 1..n with r / n <= ratio go to train. A group therefore
    keeps floor(ratio × n) rows in train (not round), and a one-row group goes wholly to test.
    The shuffle key is ``RandomState(seed).rand`` over the kept rows in input order, as their
    ``np.random.seed(seed); np.random.rand(n)``, without touching numpy's global state; both
    frames come back ordered by group then shuffle key, with the input's index. Unlike theirs,
    the input frame is not modified and test is exactly the rows not in train.
    """
    group_col = _group_column(filter_by, user_col, item_col)
    _check_stratified_arguments(df, ratio, min_rating, [user_col, item_col])
    data = _drop_small_groups(df, group_col, min_rating)
    order, position_in_group = _shuffled_positions(data[group_col], seed)
    shuffled = data.iloc[order]
    in_train = position_in_group <= ratio
    return shuffled[in_train], shuffled[~in_train]


def time_split(
    df: pd.DataFrame, cutoff: TimeLike, time_col: str = "timestamp"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows strictly before ``cutoff`` are train, rows at or after it are test (input order)."""
    times = _required_times(df, time_col)
    in_train = (times < cutoff).to_numpy()
    return df[in_train], df[~in_train]


def time_cutoff_for_fraction(times: pd.Series, test_fraction: float) -> pd.Timestamp | float:
    """The (1 − test_fraction) quantile of ``times``: ``time_split`` at it leaves ≈ that share.

    Linear interpolation between observations; rows tied at the cutoff go to test.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    observed = times.dropna()
    if observed.empty:
        raise ValueError("cannot choose a cutoff from an empty series of times")
    cutoff = observed.quantile(1.0 - test_fraction)
    if isinstance(cutoff, pd.Timestamp):
        return cutoff
    return float(cutoff)


def leave_one_out(
    df: pd.DataFrame,
    user_col: str = "user_id",
    time_col: str | None = "timestamp",
    seed: int = 42,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each user's latest row goes to test, for users with at least two rows; the rest is train.

    Among rows tied at a user's latest time the one that comes last in the input wins. With
    ``time_col=None`` the test row is drawn at random (``RandomState(seed)``). Both frames keep
    the input's order and index.
    """
    users = df[user_col]
    if users.isna().any():
        raise ValueError(f"column {user_col!r} has missing values")
    if time_col is None:
        recency = pd.Series(np.random.RandomState(seed).rand(len(df)), index=df.index)
    else:
        recency = _required_times(df, time_col)
    in_test = _last_row_of_repeat_users(users, recency)
    return df[~in_test], df[in_test]


def _group_column(filter_by: str, user_col: str, item_col: str) -> str:
    if filter_by == "user":
        return user_col
    if filter_by == "item":
        return item_col
    raise ValueError(f"filter_by must be 'user' or 'item', got {filter_by!r}")


def _check_stratified_arguments(
    df: pd.DataFrame, ratio: float, min_rating: int, columns: list[str]
) -> None:
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must be in (0, 1), got {ratio}")
    if min_rating < 1:
        raise ValueError(f"min_rating must be at least 1, got {min_rating}")
    for column in columns:
        if column not in df.columns:
            raise ValueError(f"column {column!r} is missing")
        if df[column].isna().any():
            raise ValueError(f"column {column!r} has missing values")


def _drop_small_groups(df: pd.DataFrame, group_col: str, min_rating: int) -> pd.DataFrame:
    if min_rating <= 1:
        return df
    sizes = df.groupby(group_col, sort=False)[group_col].transform("size")
    return df[(sizes >= min_rating).to_numpy()]


def _shuffled_positions(groups: pd.Series, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row order by (group, random key), and each row's 1-based shuffled rank ÷ group size."""
    keys = pd.DataFrame(
        {"group": groups.to_numpy(), "key": np.random.RandomState(seed).rand(len(groups))}
    )
    ordered = keys.sort_values(["group", "key"])
    by_group = ordered.groupby("group", sort=False)["group"]
    rank = by_group.cumcount().to_numpy() + 1
    size = by_group.transform("size").to_numpy()
    # Same float division and <= comparison as theirs, so group sizes agree exactly.
    return ordered.index.to_numpy(), rank / size


def _required_times(df: pd.DataFrame, time_col: str) -> pd.Series:
    times = df[time_col]
    if times.isna().any():
        raise ValueError(f"column {time_col!r} has missing values")
    return times


def _last_row_of_repeat_users(users: pd.Series, recency: pd.Series) -> np.ndarray:
    """Boolean mask, by input position: the latest row of each user who has two or more."""
    keys = pd.DataFrame(
        {"user": users.to_numpy(), "recency": recency.to_numpy(), "position": range(len(users))}
    )
    # The position column makes the order total, so ties are resolved the same way every run.
    ordered = keys.sort_values(["user", "recency", "position"])
    by_user = ordered.groupby("user", sort=False)["user"]
    is_last = (by_user.cumcount(ascending=False) == 0).to_numpy()
    has_repeat = (by_user.transform("size") >= 2).to_numpy()
    mask = np.zeros(len(users), dtype=bool)
    mask[ordered["position"].to_numpy()[is_last & has_repeat]] = True
    return mask
