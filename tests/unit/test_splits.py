"""Train/test splits: stratified group sizes and seeds, time boundaries, leave-one-out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nextoffer.evaluation.splits import (
    leave_one_out,
    stratified_split,
    time_cutoff_for_fraction,
    time_split,
)


def interactions(sizes: dict[str, int]) -> pd.DataFrame:
    """User u has sizes[u] rows, with items 0..n-1 and timestamps 0..n-1."""
    rows = [(user, item, item) for user, n in sizes.items() for item in range(n)]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    return frame.sample(frac=1.0, random_state=3)  # an input order that is not by user


def test_stratified_train_size_is_the_count_of_ranks_with_r_over_n_at_most_ratio() -> None:
    sizes = {f"u{n}": n for n in range(1, 10)}
    train, test = stratified_split(interactions(sizes), ratio=0.75)

    # Train keeps the r = 1..n with r/n <= 0.75, i.e. floor(0.75 n):
    # n:      1  2  3  4  5  6  7  8  9
    # train:  0  1  2  3  3  4  5  6  6   (round(0.75 n) would give 1 2 2 3 4 4 5 6 7)
    expected_train = {1: 0, 2: 1, 3: 2, 4: 3, 5: 3, 6: 4, 7: 5, 8: 6, 9: 6}
    train_sizes = train.groupby("user_id").size()
    test_sizes = test.groupby("user_id").size()
    for n, in_train in expected_train.items():
        assert train_sizes.get(f"u{n}", 0) == in_train, n
        assert test_sizes.get(f"u{n}", 0) == n - in_train, n


def test_stratified_ratio_exactly_reached_by_float_division_goes_to_train() -> None:
    # 7/10 <= 0.7 holds in floating point, so a group of 10 keeps 7 rows at ratio 0.7
    train, test = stratified_split(interactions({"a": 10, "b": 20}), ratio=0.7)

    assert train.groupby("user_id").size().to_dict() == {"a": 7, "b": 14}
    assert test.groupby("user_id").size().to_dict() == {"a": 3, "b": 6}


def test_stratified_partitions_the_rows_and_keeps_the_index() -> None:
    df = interactions({"a": 5, "b": 8, "c": 3})
    train, test = stratified_split(df, ratio=0.6, seed=7)

    assert set(train.index).isdisjoint(test.index)
    assert sorted([*train.index, *test.index]) == sorted(df.index)
    assert list(train.columns) == list(df.columns)
    pd.testing.assert_frame_equal(pd.concat([train, test]).loc[df.index], df)


def test_stratified_is_deterministic_for_a_seed_and_differs_for_another() -> None:
    df = interactions({f"u{i}": 12 for i in range(20)})

    first, _ = stratified_split(df, seed=1)
    again, _ = stratified_split(df, seed=1)
    other, _ = stratified_split(df, seed=2)

    pd.testing.assert_frame_equal(first, again)
    assert set(first.index) != set(other.index)
    assert len(first) == len(other) == 20 * 9


def test_stratified_does_not_touch_numpy_global_state_or_the_input() -> None:
    df = interactions({"a": 4, "b": 6})
    before = df.copy()
    np.random.seed(123)
    expected_next = np.random.rand()
    np.random.seed(123)

    stratified_split(df, seed=9)

    assert np.random.rand() == expected_next
    pd.testing.assert_frame_equal(df, before)


def test_stratified_matches_the_microsoft_recommenders_procedure_row_for_row() -> None:
    # Their procedure, as read: seed the global RNG, one uniform key per row, sort by
    # (group, key), rank within the group, train where rank / size <= ratio.
    df = interactions({f"u{i}": i % 7 + 1 for i in range(30)}).reset_index(drop=True)
    data = df.copy()
    np.random.seed(42)
    data["random"] = np.random.rand(data.shape[0])
    data = data.sort_values(["user_id", "random"])
    groups = data.groupby("user_id")
    data["share"] = (groups.cumcount() + 1) / groups["user_id"].transform("count")
    expected_train = data[data["share"] <= 0.75].drop(columns=["random", "share"])
    expected_test = data[data["share"] > 0.75].drop(columns=["random", "share"])

    train, test = stratified_split(df, ratio=0.75, seed=42)

    pd.testing.assert_frame_equal(train, expected_train)
    pd.testing.assert_frame_equal(test, expected_test)


def test_stratified_filter_by_item_groups_by_item() -> None:
    # items 0..4 appear for 10, 8, 6, 4, 2 users respectively
    rows = [(f"u{u}", item) for item, n in enumerate([10, 8, 6, 4, 2]) for u in range(n)]
    df = pd.DataFrame(rows, columns=["user_id", "item_id"])

    train, test = stratified_split(df, ratio=0.5, filter_by="item")

    # floor(0.5 n) per item: 5, 4, 3, 2, 1
    assert train.groupby("item_id").size().to_dict() == {0: 5, 1: 4, 2: 3, 3: 2, 4: 1}
    assert test.groupby("item_id").size().to_dict() == {0: 5, 1: 4, 2: 3, 3: 2, 4: 1}


def test_stratified_min_rating_drops_small_groups_from_both_sides() -> None:
    df = interactions({"a": 2, "b": 3, "c": 5})

    train, test = stratified_split(df, min_rating=3)

    assert set(train["user_id"]) | set(test["user_id"]) == {"b", "c"}
    assert len(train) + len(test) == 8


def test_stratified_min_rating_by_item() -> None:
    # item 0 has three users, item 1 only one
    df = pd.DataFrame({"user_id": ["a", "b", "c", "a"], "item_id": [0, 0, 0, 1]})

    train, test = stratified_split(df, min_rating=2, filter_by="item")

    assert set(pd.concat([train, test])["item_id"]) == {0}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"filter_by": "both"}, "filter_by"),
        ({"ratio": 1.0}, "ratio"),
        ({"ratio": 0.0}, "ratio"),
        ({"min_rating": 0}, "min_rating"),
        ({"user_col": "customer"}, "missing"),
    ],
)
def test_stratified_rejects_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        stratified_split(interactions({"a": 3}), **kwargs)  # type: ignore[arg-type]


def test_time_split_puts_the_cutoff_in_test() -> None:
    df = pd.DataFrame({"user_id": list("abcd"), "timestamp": [1, 2, 3, 4]})

    train, test = time_split(df, cutoff=3)

    assert train["timestamp"].tolist() == [1, 2]
    assert test["timestamp"].tolist() == [3, 4]


def test_time_split_on_datetimes() -> None:
    times = pd.to_datetime(["2026-01-01", "2026-02-01", "2026-03-01"], utc=True)
    df = pd.DataFrame({"at": times, "x": [1, 2, 3]})

    train, test = time_split(df, pd.Timestamp("2026-02-01", tz="UTC"), time_col="at")

    assert train["x"].tolist() == [1]
    assert test["x"].tolist() == [2, 3]


def test_time_split_rejects_missing_times() -> None:
    with pytest.raises(ValueError, match="missing"):
        time_split(pd.DataFrame({"timestamp": [1.0, np.nan]}), cutoff=1)


def test_time_cutoff_for_fraction() -> None:
    times = pd.Series(range(10))

    cutoff = time_cutoff_for_fraction(times, 0.2)

    # 0.8 quantile of 0..9 with linear interpolation: 0.8 × 9 = 7.2
    assert cutoff == pytest.approx(7.2)
    _, test = time_split(pd.DataFrame({"timestamp": times}), cutoff)
    assert test["timestamp"].tolist() == [8, 9]


def test_time_cutoff_for_fraction_on_datetimes() -> None:
    times = pd.Series(pd.date_range("2026-01-01", periods=5, freq="D"))

    cutoff = time_cutoff_for_fraction(times, 0.25)

    assert cutoff == pd.Timestamp("2026-01-04")
    with pytest.raises(ValueError, match="test_fraction"):
        time_cutoff_for_fraction(times, 1.0)
    with pytest.raises(ValueError, match="empty"):
        time_cutoff_for_fraction(pd.Series([], dtype=float), 0.5)


def test_leave_one_out_takes_the_latest_row_of_users_with_two_or_more() -> None:
    df = pd.DataFrame(
        {
            "user_id": ["a", "b", "a", "c", "a", "c"],
            "item_id": [1, 2, 3, 4, 5, 6],
            "timestamp": [1, 9, 3, 5, 2, 5],
        },
        index=[10, 11, 12, 13, 14, 15],
    )

    train, test = leave_one_out(df)

    # a: latest is item 3 (t=3); b: a single row, stays in train;
    # c: items 4 and 6 tie at t=5 and the later row in the input, item 6, is taken
    assert test["item_id"].tolist() == [3, 6]
    assert test.index.tolist() == [12, 15]
    assert train["item_id"].tolist() == [1, 2, 4, 5]


def test_leave_one_out_without_time_is_random_but_seeded() -> None:
    df = pd.DataFrame({"user_id": np.repeat(np.arange(50), 4), "item_id": np.tile(range(4), 50)})

    train, test = leave_one_out(df, time_col=None, seed=1)
    _, again = leave_one_out(df, time_col=None, seed=1)
    _, other = leave_one_out(df, time_col=None, seed=2)

    assert test["user_id"].tolist() == list(range(50))
    assert len(train) == 150
    pd.testing.assert_frame_equal(test, again)
    assert test["item_id"].tolist() != other["item_id"].tolist()


def test_leave_one_out_rejects_missing_times() -> None:
    df = pd.DataFrame({"user_id": ["a", "a"], "timestamp": [1.0, np.nan]})

    with pytest.raises(ValueError, match="missing"):
        leave_one_out(df)
