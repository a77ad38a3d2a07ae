"""One contract for every recommender in the catalog, plus model-specific checks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from nextoffer.models.als import ALSRecommender
from nextoffer.models.base import ARRAYS_FILE, MODEL_FILE, Interactions, Recommender
from nextoffer.models.catalog import (
    DEFAULT_GRIDS,
    RECOMMENDERS,
    load_recommender,
    make_recommender,
)
from nextoffer.models.ease import EASERecommender
from nextoffer.models.item_knn import ItemKNNRecommender
from nextoffer.models.popularity import PopularityRecommender, SegmentPopularityRecommender

NAMES = sorted(RECOMMENDERS)
# Models that do not personalise and so are exempt from the planted-structure test.
NON_PERSONAL = {"popularity"}
# Test settings where a model's defaults do not suit 30 items; anything else uses defaults.
# ALS with its default 64 factors for 30 items memorises the training rows and ranks unseen
# items on noise; 4 factors for 3 planted blocks is the factors ≪ items of a real catalogue.
TEST_PARAMS: dict[str, dict[str, Any]] = {"als": {"factors": 4}}

N_GROUPS = 3
BLOCK = 10
N_ITEMS = N_GROUPS * BLOCK
HIT_K = 5


@dataclass(frozen=True)
class World:
    """Training interactions and fresh users (new rows) with one held-out item each."""

    train: Interactions
    new_history: sp.csr_matrix
    new_groups: np.ndarray
    held_out: np.ndarray


def _users(rng: np.random.Generator, n_users: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """Each user buys 4 items of their group's block (skewed within it) plus 1 random item."""
    groups = rng.integers(0, N_GROUPS, n_users)
    within = np.linspace(3.0, 1.0, BLOCK)
    within /= within.sum()
    rows: list[int] = []
    cols: list[int] = []
    for user, group in enumerate(groups):
        bought = set(group * BLOCK + rng.choice(BLOCK, 4, replace=False, p=within))
        bought.add(int(rng.integers(0, N_ITEMS)))
        rows.extend([user] * len(bought))
        cols.extend(sorted(int(i) for i in bought))
    values = np.ones(len(rows), dtype=np.float32)
    return sp.csr_matrix((values, (rows, cols)), shape=(n_users, N_ITEMS)), groups


def _make_world() -> World:
    rng = np.random.default_rng(7)
    train, train_groups = _users(rng, 360)
    new, new_groups = _users(rng, 150)
    # Hold out one in-block item per new user; the rest of the row is their history.
    held_out = np.empty(new.shape[0], dtype=np.int64)
    new = new.tolil()
    for user, group in enumerate(new_groups):
        items = [i for i in new.rows[user] if i // BLOCK == group]
        held_out[user] = items[int(rng.integers(0, len(items)))]
        new[user, held_out[user]] = 0
    history = sp.csr_matrix(new)
    history.eliminate_zeros()
    return World(Interactions(train, train_groups), history, new_groups, held_out)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # The machine is shared; one BLAS thread also keeps the float results reproducible.
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def world() -> World:
    return _make_world()


def _new(name: str) -> Recommender:
    return make_recommender(name, **TEST_PARAMS.get(name, {}))


@pytest.fixture(scope="module")
def fitted(world: World) -> dict[str, Recommender]:
    """Each model fitted once on the training data, shared by the read-only tests."""
    with threadpool_limits(limits=1):
        return {name: _new(name).fit(world.train) for name in NAMES}


# --- the contract -----------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_fit_returns_self_and_leaves_the_input_alone(name: str, world: World) -> None:
    before = world.train.matrix.copy()
    model = _new(name)
    assert model.fit(world.train) is model
    assert model.n_items == N_ITEMS
    assert model.name == name
    after = world.train.matrix
    assert (before != after).nnz == 0
    assert before.dtype == after.dtype


@pytest.mark.parametrize("name", NAMES)
def test_params_rebuild_the_model_and_are_json(name: str, fitted: dict[str, Recommender]) -> None:
    model = fitted[name]
    assert json.loads(json.dumps(model.params)) == model.params
    rebuilt = type(model)(**model.params)
    assert rebuilt.params == model.params
    assert make_recommender(name, **model.params).params == model.params


@pytest.mark.parametrize("name", NAMES)
def test_recommend_is_best_first_and_agrees_with_score_block(
    name: str, world: World, fitted: dict[str, Recommender]
) -> None:
    model, history, groups = fitted[name], world.train.matrix, world.train.user_groups
    items, scores = model.recommend(history, HIT_K, groups=groups)
    assert items.shape == scores.shape == (history.shape[0], HIT_K)
    assert items.dtype == np.int32 and scores.dtype == np.float32
    full = model.score_block(history, groups)
    assert full.shape == (history.shape[0], N_ITEMS) and full.dtype == np.float32
    assert np.isfinite(full).all()
    assert np.array_equal(scores, np.take_along_axis(full, items, axis=1))
    assert (np.diff(scores, axis=1) <= 0).all()
    # Equal scores are listed lower item first.
    tied = np.diff(scores, axis=1) == 0
    assert (np.diff(items, axis=1)[tied] > 0).all()
    # Nothing left out scores above the last one taken (seen items aside).
    rest = full.copy()
    rest[history.nonzero()] = -np.inf
    np.put_along_axis(rest, items.astype(np.int64), -np.inf, axis=1)
    assert (rest.max(axis=1) <= scores[:, -1]).all()


@pytest.mark.parametrize("name", NAMES)
def test_seen_items_are_excluded_unless_asked(
    name: str, world: World, fitted: dict[str, Recommender]
) -> None:
    model, history = fitted[name], world.train.matrix
    items, _ = model.recommend(history, HIT_K, groups=world.train.user_groups)
    dense = history.toarray() > 0
    assert not np.take_along_axis(dense, items.astype(np.int64), axis=1).any()
    everything, scores = model.recommend(
        history, N_ITEMS, groups=world.train.user_groups, exclude_seen=False
    )
    assert np.isfinite(scores).all()
    assert (np.sort(everything, axis=1) == np.arange(N_ITEMS)).all()


@pytest.mark.parametrize("name", NAMES)
def test_k_beyond_the_catalogue_is_padded(
    name: str, world: World, fitted: dict[str, Recommender]
) -> None:
    model, history = fitted[name], world.train.matrix[:20]
    k = N_ITEMS + 5
    items, scores = model.recommend(history, k, groups=world.train.user_groups[:20])
    valid = items >= 0
    # Every unseen item is listed once, then padding only.
    assert (valid.sum(axis=1) == N_ITEMS - np.diff(history.indptr)).all()
    assert (np.diff(valid.astype(np.int8), axis=1) <= 0).all()
    assert np.isneginf(scores[~valid]).all() and np.isfinite(scores[valid]).all()
    for row in range(history.shape[0]):
        listed = items[row][valid[row]]
        assert len(set(listed.tolist())) == listed.size


@pytest.mark.parametrize("name", NAMES)
def test_empty_history_gets_a_valid_answer(name: str, fitted: dict[str, Recommender]) -> None:
    model = fitted[name]
    empty = sp.csr_matrix((4, N_ITEMS), dtype=np.float32)
    for groups in (None, np.array([0, 1, 2, -1])):
        items, scores = model.recommend(empty, HIT_K, groups=groups)
        assert ((items >= 0) & (items < N_ITEMS)).all()
        assert np.isfinite(scores).all()
    nobody = sp.csr_matrix((0, N_ITEMS), dtype=np.float32)
    items, scores = model.recommend(nobody, HIT_K)
    assert items.shape == scores.shape == (0, HIT_K)


@pytest.mark.parametrize("name", NAMES)
def test_fitting_is_deterministic(name: str, world: World, fitted: dict[str, Recommender]) -> None:
    again = _new(name).fit(world.train)
    first = fitted[name].recommend(world.new_history, 10, groups=world.new_groups)
    second = again.recommend(world.new_history, 10, groups=world.new_groups)
    assert np.array_equal(first[0], second[0])
    assert np.array_equal(first[1], second[1])


@pytest.mark.parametrize("name", NAMES)
def test_save_and_load_round_trip(
    name: str, world: World, fitted: dict[str, Recommender], tmp_path: Path
) -> None:
    model = fitted[name]
    model.save(tmp_path / "model")
    meta = json.loads((tmp_path / "model" / MODEL_FILE).read_text())
    assert meta["name"] == name and meta["params"] == model.params
    with np.load(tmp_path / "model" / ARRAYS_FILE, allow_pickle=False) as saved:
        for key in saved.files:
            assert saved[key].dtype != object
    for loaded in (type(model).load(tmp_path / "model"), load_recommender(tmp_path / "model")):
        assert type(loaded) is type(model)
        assert loaded.params == model.params and loaded.n_items == model.n_items
        for history, groups in (
            (world.train.matrix, world.train.user_groups),
            (world.new_history, world.new_groups),
        ):
            expected = model.score_block(history, groups)
            assert np.array_equal(loaded.score_block(history, groups), expected)


@pytest.mark.parametrize("name", NAMES)
def test_new_users_can_be_scored(name: str, world: World, fitted: dict[str, Recommender]) -> None:
    model = fitted[name]
    scores = model.score_block(world.new_history, world.new_groups)
    assert scores.shape == (world.new_history.shape[0], N_ITEMS)
    assert scores.dtype == np.float32 and np.isfinite(scores).all()
    with pytest.raises(ValueError, match="item columns"):
        model.score_block(sp.csr_matrix((2, N_ITEMS + 1)), None)


@pytest.mark.parametrize("name", sorted(set(NAMES) - NON_PERSONAL))
def test_planted_structure_is_found(
    name: str, world: World, fitted: dict[str, Recommender]
) -> None:
    """New users' held-out in-block item lands in the top 5 far more often than by chance.

    A new user has 3 of their block's 10 items left in history (plus a random one), so about
    7 unseen block items and 26 unseen items in all. Ranking at random, the held-out item is
    in the top 5 with probability about 5/26 ≈ 0.19; a model that puts the user's block first
    hits about 5/7 ≈ 0.71 of the time, more with the within-block skew. 0.5 is well clear of
    chance and leaves room for noise. The top 5 should also come almost only from the block
    (chance: about 7/26 ≈ 0.27).
    """
    model = fitted[name]
    items, _ = model.recommend(world.new_history, HIT_K, groups=world.new_groups)
    hit_rate = (items == world.held_out[:, None]).any(axis=1).mean()
    in_block = (items // BLOCK == world.new_groups[:, None]).mean()
    assert hit_rate >= 0.5, f"{name}: hit-rate@5 {hit_rate:.2f}"
    assert in_block >= 0.8, f"{name}: share of top-5 in the user's block {in_block:.2f}"


# --- catalog -------------------------------------------------------------------------------


def test_catalog_names_grids_and_errors(tmp_path: Path) -> None:
    assert set(NAMES) == {"popularity", "segment_popularity", "item_knn", "ease", "als", "bpr"}
    assert set(DEFAULT_GRIDS) == set(RECOMMENDERS)
    for name, grid in DEFAULT_GRIDS.items():
        assert grid, name
        for params in grid:
            assert make_recommender(name, **params).params.items() >= params.items()
    with pytest.raises(ValueError, match="unknown recommender"):
        make_recommender("nope")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / MODEL_FILE).write_text(json.dumps({"name": "nope"}))
    with pytest.raises(ValueError, match="unknown recommender"):
        load_recommender(tmp_path / "m")
    with pytest.raises(TypeError):
        make_recommender("ease", neighbours=3)


# --- model-specific ------------------------------------------------------------------------


def test_popularity_counts_users_and_breaks_ties_by_index() -> None:
    # Duplicates and stored zeros must not count; items 1, 3 and 4 tie on 2 users each.
    matrix = sp.csr_matrix(
        (
            np.array([1, 1, 5, 1, 0, 1, 1, 1, 1], dtype=np.float32),
            (np.array([0, 0, 1, 2, 2, 0, 1, 0, 2]), np.array([1, 1, 1, 0, 2, 3, 3, 4, 4])),
        ),
        shape=(3, 6),
    )
    model = PopularityRecommender().fit(Interactions(matrix))
    assert model.score_block(matrix, None)[0].tolist() == [1, 2, 0, 2, 2, 0]
    items, _ = model.recommend(sp.csr_matrix((2, 6)), 3)
    assert items.tolist() == [[1, 3, 4], [1, 3, 4]]
    items, _ = model.recommend(sp.csr_matrix((1, 6)), 5)
    assert items.tolist() == [[1, 3, 4, 0, 2]]
    # A tie across the k-th place, in a catalogue big enough for a partial sort: every item
    # has one user, item 40 two; the lowest indices must fill the remaining places.
    wide = sp.csr_matrix(sp.identity(50) + sp.csr_matrix(([1.0], ([0], [40])), shape=(50, 50)))
    model = PopularityRecommender().fit(Interactions(wide))
    items, _ = model.recommend(sp.csr_matrix((3, 50)), 5)
    assert items.tolist() == [[40, 0, 1, 2, 3]] * 3


def test_segment_popularity_formula_and_fallbacks() -> None:
    rng = np.random.default_rng(3)
    matrix = sp.csr_matrix((rng.random((80, 6)) < 0.4).astype(np.float32))
    # Group 0: 40 users, group 1: 30, group 2: 5 (too small), the rest unknown.
    groups = np.array([0] * 40 + [1] * 30 + [2] * 5 + [-1] * 5)
    model = SegmentPopularityRecommender(min_group_users=20, shrinkage=10.0)
    model.fit(Interactions(matrix, groups))
    dense = matrix.toarray()
    share = dense.mean(axis=0)
    asked = np.array([0, 1, 2, -1, 9])
    scores = model.score_block(sp.csr_matrix((5, 6)), asked)
    for row, group, size in ((0, 0, 40), (1, 1, 30)):
        count = dense[groups == group].sum(axis=0)
        np.testing.assert_allclose(scores[row], (count + 10.0 * share) / (size + 10.0), rtol=1e-6)
    # Tiny group 2, unknown -1 and unseen 9 all fall back to the global share.
    for row in (2, 3, 4):
        np.testing.assert_allclose(scores[row], share, rtol=1e-6)
    np.testing.assert_allclose(model.score_block(sp.csr_matrix((2, 6)), None), [share, share])
    no_groups = SegmentPopularityRecommender().fit(Interactions(matrix))
    np.testing.assert_allclose(no_groups.score_block(sp.csr_matrix((1, 6)), asked[:1])[0], share)


def test_item_knn_is_sparse_pruned_cosine(world: World) -> None:
    matrix = world.train.matrix
    dense = (matrix.toarray() > 0).astype(np.float64)
    norms = np.linalg.norm(dense, axis=0)
    cosine = dense.T @ dense / (np.outer(norms, norms) + 2.0)
    np.fill_diagonal(cosine, 0.0)
    full = ItemKNNRecommender(neighbours=N_ITEMS, shrink=2.0).fit(world.train)
    assert sp.issparse(full.similarity)
    np.testing.assert_allclose(full.similarity.toarray(), cosine, rtol=1e-5, atol=1e-7)
    pruned = ItemKNNRecommender(neighbours=4, shrink=2.0).fit(world.train)
    similarity = pruned.similarity.tocsc()
    assert sp.issparse(similarity) and (np.diff(similarity.indptr) <= 4).all()
    assert (similarity.diagonal() == 0).all()
    for item in range(N_ITEMS):
        kept = similarity[:, item].toarray().ravel()
        # What is kept is the largest of the column, at its full value.
        assert kept[kept > 0].min() >= np.sort(cosine[:, item])[-4] - 1e-6
        np.testing.assert_allclose(kept[kept > 0], cosine[kept > 0, item], rtol=1e-5)


def test_ease_closed_form_with_zero_diagonal(world: World) -> None:
    model = EASERecommender(regularization=50.0).fit(world.train)
    assert model.weights.dtype == np.float32 and (np.diag(model.weights) == 0).all()
    dense = (world.train.matrix.toarray() > 0).astype(np.float64)
    precision = np.linalg.inv(dense.T @ dense + 50.0 * np.eye(N_ITEMS))
    expected = -precision / np.diag(precision)[None, :]
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(model.weights, expected, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="max_items"):
        EASERecommender(max_items=N_ITEMS - 1).fit(world.train)


def test_als_scores_new_users_exactly_as_implicit_does(world: World) -> None:
    """Our scores are implicit's own recommend(..., recalculate_user=True) scores.

    The same settings through implicit directly give the same item factors (the fit is
    implicit's), and for the training users implicit's top 10, recomputing each user's
    factors from their history, equals ours item for item.
    """
    from implicit.cpu.als import AlternatingLeastSquares

    params = {"factors": 8, "regularization": 0.05, "iterations": 15, "alpha": 10.0}
    model = ALSRecommender(**params, seed=5).fit(world.train)
    reference = AlternatingLeastSquares(**params, random_state=5, num_threads=1)
    reference.fit(world.train.matrix, show_progress=False)
    assert np.array_equal(reference.item_factors, model.item_factors)
    matrix = world.train.matrix
    users = np.arange(matrix.shape[0])
    ids, scores = reference.recommend(users, matrix, N=10, recalculate_user=True)
    ours_ids, ours_scores = model.recommend(matrix, 10)
    assert np.array_equal(ids, ours_ids)
    np.testing.assert_allclose(ours_scores, scores, rtol=1e-5, atol=1e-6)


def test_als_user_factors_solve_the_normal_equations(world: World) -> None:
    """x_u = (YᵀY + Yᵀ(C_u − I)Y + λI)⁻¹ Yᵀ C_u p_u, c_ui = α·r_ui, checked in float64."""
    model = ALSRecommender(factors=8, alpha=4.0, regularization=0.3).fit(world.train)
    # Weighted rows of new users: the confidence follows the weights.
    history = world.new_history[:25].astype(np.float32)
    history.data = np.linspace(0.5, 3.0, history.nnz, dtype=np.float32)
    y = model.item_factors.astype(np.float64)
    got = model.user_factors(history)
    for user in range(history.shape[0]):
        row = history[user]
        confidence = 4.0 * row.data.astype(np.float64)
        ys = y[row.indices]
        a = y.T @ y + ys.T @ ((confidence - 1.0)[:, None] * ys) + 0.3 * np.eye(8)
        b = ys.T @ confidence
        np.testing.assert_allclose(got[user], np.linalg.solve(a, b), rtol=2e-3, atol=1e-5)
