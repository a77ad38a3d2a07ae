"""The ranker's shortlist keeps every recommender's own top products, and only candidates."""

from __future__ import annotations

import numpy as np
import pandas as pd

from nextoffer.models.candidates import shortlist


def test_shortlist_is_the_union_of_each_recommenders_top_candidates() -> None:
    rng = np.random.default_rng(3)
    mask = rng.random((50, 12)) > 0.2
    scores = {"a": rng.random((50, 12)), "b": rng.random((50, 12))}

    kept = shortlist(mask, scores, 3)

    assert not (kept & ~mask).any()  # never adds a non-candidate
    for values in scores.values():
        masked = np.where(mask, values, -np.inf)
        for row in range(50):
            top = np.argsort(-masked[row])[: min(3, int(mask[row].sum()))]
            assert kept[row, top].all()  # each recommender's top 3 survives
    assert (kept.sum(axis=1) <= 6).all()
    assert kept.sum() < mask.sum()


def test_shortlist_of_zero_or_a_whole_catalogue_keeps_everything() -> None:
    mask = np.ones((4, 5), dtype=bool)
    scores = {"a": np.arange(20.0).reshape(4, 5)}
    assert (shortlist(mask, scores, 0) == mask).all()
    assert (shortlist(mask, scores, 5) == mask).all()


def test_small_frames_are_coded_like_large_ones() -> None:
    """The dict lookup for a few rows gives exactly the codes of the pandas path."""
    from nextoffer.models.candidates import _SMALL_FRAME, _codes

    levels = ["a", "b", "3", "3.0", "True"]
    cells: list[object] = ["a", "z", None, "b", 3, 3.0, float("nan"), True, pd.NA, "True"]
    small = pd.Series(cells, dtype=object)
    large = pd.Series(cells * (_SMALL_FRAME // len(cells) + 1), dtype=object)
    assert len(large) > _SMALL_FRAME
    expected = _codes(large, levels)[: len(cells)]
    np.testing.assert_array_equal(_codes(small, levels), expected)
    assert np.isnan(expected[[1, 2, 6, 8]]).all()
    assert list(expected[[0, 3, 4, 5, 7]]) == [0, 1, 2, 3, 4]
