"""Ranking and classification metrics: hand-worked values, edge cases, a reference check."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from nextoffer.evaluation.metrics import (
    RANKING_METRICS,
    catalog_coverage,
    classification_metrics,
    lift_top_decile,
    per_user_metrics,
    per_user_ndcg,
    ranking_metrics,
)

LOG2_3 = math.log2(3)


def relevance(sets: list[set[int]], n_items: int) -> sp.csr_matrix:
    rows = [u for u, items in enumerate(sets) for _ in items]
    cols = [i for items in sets for i in sorted(items)]
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(sets), n_items))


# Four users, eight items, k = 3.
#   user 0: recommended [0, 1, 2], relevant {1, 4}        -> one hit at rank 2
#   user 1: recommended [3, 5, 0], relevant {0, 2, 3, 4}  -> hits at ranks 1 and 3
#   user 2: recommended [6],       relevant {}            -> not evaluated
#   user 3: recommended [2, 4],    relevant {5}           -> no hit
RECOMMENDED = np.array([[0, 1, 2], [3, 5, 0], [6, -1, -1], [2, 4, -1]])
RELEVANT = relevance([{1, 4}, {0, 2, 3, 4}, set(), {5}], n_items=8)

# nDCG, user 0: DCG = 1/log2(3); IDCG = 1/log2(2) + 1/log2(3) (min(|rel| = 2, k) = 2 terms)
NDCG_0 = (1 / LOG2_3) / (1 + 1 / LOG2_3)
# nDCG, user 1: DCG = 1/log2(2) + 1/log2(4) = 1.5; IDCG over min(4, 3) = 3 ranks
NDCG_1 = 1.5 / (1 + 1 / LOG2_3 + 0.5)
# AP, user 0: precision at the hit (rank 2) = 1/2, divided by |rel| = 2 -> 0.25
# AP, user 1: (1/1 + 2/3) / |rel| = (5/3) / 4 = 5/12; dividing by min(k, |rel|) = 3 would give 5/9
AP_0, AP_1 = 0.25, 5 / 12


def test_hand_worked_example() -> None:
    result = ranking_metrics(RECOMMENDED, RELEVANT, k=3)

    assert set(result) == {f"{m}@3" for m in RANKING_METRICS} | {"coverage@3", "users"}
    # users 0, 1 and 3 have test items; user 2 has none and is left out
    assert result["users"] == 3.0
    # precision: (1/3 + 2/3 + 0) / 3
    assert result["precision@3"] == pytest.approx(1 / 3)
    # recall: (1/2 + 2/4 + 0) / 3
    assert result["recall@3"] == pytest.approx(1 / 3)
    assert result["ndcg@3"] == pytest.approx((NDCG_0 + NDCG_1 + 0) / 3)
    # MAP divides by |relevant|: (0.25 + 5/12 + 0) / 3 = 2/9, not (0.25 + 5/9) / 3
    assert result["map@3"] == pytest.approx((AP_0 + AP_1) / 3)
    assert result["map@3"] == pytest.approx(2 / 9)
    # hit rate: users 0 and 1 of 3
    assert result["hit_rate@3"] == pytest.approx(2 / 3)
    # MRR: first hits at ranks 2 and 1 -> (1/2 + 1 + 0) / 3
    assert result["mrr@3"] == pytest.approx(0.5)
    # coverage counts every row, user 2 included: {0, 1, 2, 3, 4, 5, 6} of 8 items
    assert result["coverage@3"] == pytest.approx(7 / 8)


def test_per_user_values_and_nan_for_users_without_test_items() -> None:
    per_user = per_user_metrics(RECOMMENDED, RELEVANT, k=3)

    np.testing.assert_allclose(per_user["ndcg"], [NDCG_0, NDCG_1, np.nan, 0.0])
    np.testing.assert_allclose(per_user["map"], [AP_0, AP_1, np.nan, 0.0])
    np.testing.assert_allclose(per_user["precision"], [1 / 3, 2 / 3, np.nan, 0.0])
    np.testing.assert_allclose(per_user["mrr"], [0.5, 1.0, np.nan, 0.0])
    np.testing.assert_allclose(per_user_ndcg(RECOMMENDED, RELEVANT, k=3), per_user["ndcg"])
    assert np.nanmean(per_user["ndcg"]) == pytest.approx(
        ranking_metrics(RECOMMENDED, RELEVANT, 3)["ndcg@3"]
    )


def test_n_items_sets_the_coverage_denominator() -> None:
    assert ranking_metrics(RECOMMENDED, RELEVANT, k=3, n_items=14)["coverage@3"] == 0.5
    # Only the first k columns count: at k = 1 the items shown are 0, 3, 6 and 2.
    assert catalog_coverage(RECOMMENDED, k=1, n_items=8) == 0.5
    with pytest.raises(ValueError, match="n_items"):
        catalog_coverage(RECOMMENDED, k=1, n_items=0)


def test_k_larger_than_the_recommendation_lists() -> None:
    # Two items recommended, both relevant, k = 5
    result = ranking_metrics(np.array([[0, 1]]), relevance([{0, 1}], 2), k=5)

    # precision divides by k even though only two items were recommended: 2/5
    assert result["precision@5"] == pytest.approx(0.4)
    assert result["recall@5"] == 1.0
    # IDCG has min(|rel| = 2, k = 5) = 2 terms, the same as DCG
    assert result["ndcg@5"] == pytest.approx(1.0)
    # AP = (1/1 + 2/2) / 2
    assert result["map@5"] == pytest.approx(1.0)
    assert result["coverage@5"] == 1.0


def test_columns_beyond_k_are_ignored() -> None:
    # The only relevant item sits at rank 4; at k = 3 it is not a hit.
    result = ranking_metrics(np.array([[0, 1, 2, 4]]), relevance([{4}], 5), k=3)

    assert result["hit_rate@3"] == 0.0
    assert result["coverage@3"] == pytest.approx(3 / 5)


def test_no_hits_at_all_gives_zero_for_evaluated_users() -> None:
    result = ranking_metrics(np.array([[0, 1], [2, 3]]), relevance([{2}, {0}], 4), k=2)

    assert result["users"] == 2.0
    for name in RANKING_METRICS:
        assert result[f"{name}@2"] == 0.0


def test_all_hits_gives_one() -> None:
    result = ranking_metrics(np.array([[2, 0, 1]]), relevance([{0, 1, 2}], 3), k=3)

    for name in RANKING_METRICS:
        assert result[f"{name}@3"] == pytest.approx(1.0)


def test_user_without_recommendations_counts_as_zero_unless_skipped() -> None:
    # user 0: [0] with relevant {0} -> precision 1/2; user 1: nothing recommended, relevant {1}
    recommended = np.array([[0, -1], [-1, -1]])
    relevant = relevance([{0}, {1}], 3)

    counted = ranking_metrics(recommended, relevant, k=2)
    assert counted["users"] == 2.0
    assert counted["precision@2"] == pytest.approx((1 / 2 + 0) / 2)
    assert counted["ndcg@2"] == pytest.approx(0.5)

    skipped = ranking_metrics(recommended, relevant, k=2, skip_empty_rows=True)
    assert skipped["users"] == 1.0
    assert skipped["precision@2"] == pytest.approx(0.5)
    assert skipped["ndcg@2"] == pytest.approx(1.0)
    assert skipped["coverage@2"] == counted["coverage@2"] == pytest.approx(1 / 3)


def test_no_user_with_test_items_gives_zeros() -> None:
    result = ranking_metrics(np.array([[0, 1]]), sp.csr_matrix((1, 2)), k=2)

    assert result["users"] == 0.0
    assert result["ndcg@2"] == 0.0
    assert result["coverage@2"] == 1.0


def test_stored_zeros_are_not_relevant() -> None:
    relevant = sp.csr_matrix((np.array([1.0, 0.0]), np.array([0, 1]), np.array([0, 2])), (1, 2))

    result = ranking_metrics(np.array([[1, 0]]), relevant, k=2)

    # |relevant| = 1 (item 0, at rank 2): recall 1, AP = (1/2) / 1
    assert result["recall@2"] == 1.0
    assert result["map@2"] == pytest.approx(0.5)


def test_dense_and_csr_array_inputs_are_accepted() -> None:
    expected = ranking_metrics(RECOMMENDED, RELEVANT, k=3)

    assert ranking_metrics(RECOMMENDED, RELEVANT.toarray(), k=3) == expected
    assert ranking_metrics(RECOMMENDED, sp.csr_array(RELEVANT), k=3) == expected


@pytest.mark.parametrize(
    ("recommended", "message"),
    [
        (np.array([[0, 0, 1]]), "same item twice"),
        (np.array([[0, -1, 1]]), "padding must come after"),
        (np.array([[0, -2, 1]]), "negative"),
        (np.array([[0, 9, 1]]), "outside"),
        (np.array([[0.0, 1.0, 2.0]]), "integer"),
        (np.array([0, 1, 2]), "2-D"),
        (np.array([[0, 1, 2], [0, 1, 2]]), "rows"),
    ],
)
def test_invalid_recommendations_are_rejected(recommended: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ranking_metrics(recommended, relevance([{0}], 4), k=3)


def test_k_must_be_positive() -> None:
    with pytest.raises(ValueError, match="k must be"):
        ranking_metrics(RECOMMENDED, RELEVANT, k=0)


def reference_metrics(
    recommended: np.ndarray, sets: list[set[int]], k: int, skip_empty_rows: bool
) -> dict[str, float]:
    """Straightforward per-user loops, written from the Microsoft Recommenders definitions."""
    totals = dict.fromkeys(RANKING_METRICS, 0.0)
    users = 0
    for row, relevant in zip(recommended, sets, strict=True):
        shown = [int(item) for item in row[:k] if item >= 0]
        if not relevant or (skip_empty_rows and not shown):
            continue
        users += 1
        hit_ranks = [rank for rank, item in enumerate(shown, start=1) if item in relevant]
        # natural log as their default discfun_type="loge": the base cancels in DCG / IDCG
        dcg = sum(1 / math.log(1 + rank) for rank in hit_ranks)
        idcg = sum(1 / math.log(1 + i) for i in range(1, min(len(relevant), k) + 1))
        totals["precision"] += len(hit_ranks) / k
        totals["recall"] += len(hit_ranks) / len(relevant)
        totals["ndcg"] += dcg / idcg
        totals["map"] += sum(n / rank for n, rank in enumerate(hit_ranks, 1)) / len(relevant)
        totals["hit_rate"] += 1.0 if hit_ranks else 0.0
        totals["mrr"] += 1 / hit_ranks[0] if hit_ranks else 0.0
    result = {f"{name}@{k}": (v / users if users else 0.0) for name, v in totals.items()}
    result["users"] = float(users)
    return result


def random_case(seed: int) -> tuple[np.ndarray, list[set[int]], int]:
    rng = np.random.default_rng(seed)
    n_users, n_items, width = 150, 25, 12
    recommended = np.full((n_users, width), -1)
    sets = []
    for u in range(n_users):
        length = int(rng.integers(0, width + 1))
        recommended[u, :length] = rng.choice(n_items, size=length, replace=False)
        sets.append(set(rng.choice(n_items, size=int(rng.integers(0, 7)), replace=False).tolist()))
    return recommended, sets, n_items


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 5, 10, 20])
@pytest.mark.parametrize("skip_empty_rows", [False, True])
def test_matches_a_pure_python_reference(seed: int, k: int, skip_empty_rows: bool) -> None:
    recommended, sets, n_items = random_case(seed)

    result = ranking_metrics(
        recommended, relevance(sets, n_items), k, skip_empty_rows=skip_empty_rows
    )
    expected = reference_metrics(recommended, sets, k, skip_empty_rows)

    for key, value in expected.items():
        assert result[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
    shown = {int(i) for i in recommended[:, :k].ravel() if i >= 0}
    assert result[f"coverage@{k}"] == pytest.approx(len(shown) / n_items)


def test_classification_hand_example() -> None:
    y_true = np.array([1, 0, 1, 0])
    y_score = np.array([0.8, 0.3, 0.6, 0.0])

    result = classification_metrics(y_true, y_score)

    assert set(result) == {
        "roc_auc",
        "pr_auc",
        "brier",
        "lift_top_decile",
        "positives_rate",
        "rows",
    }
    # both positives score above both negatives
    assert result["roc_auc"] == 1.0
    assert result["pr_auc"] == 1.0
    # Brier: ((1-.8)² + .3² + (1-.6)² + 0²) / 4 = (.04 + .09 + .16) / 4
    assert result["brier"] == pytest.approx(0.0725)
    # top decile = ceil(4/10) = 1 row, the 0.8 positive: 1.0 / 0.5
    assert result["lift_top_decile"] == pytest.approx(2.0)
    assert result["positives_rate"] == 0.5
    assert result["rows"] == 4.0


def test_lift_breaks_ties_by_a_stable_sort() -> None:
    # 12 rows, 3 positives: base rate 1/4; the top decile is ceil(12/10) = 2 rows.
    y_true = np.array([0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1])
    # Row 1 (0.9) is first; rows 2 and 3 tie at 0.8 and the earlier one, row 2 (a negative),
    # takes the second place: top rate 1/2, lift (1/2) / (1/4) = 2 (row 3 first would give 4).
    y_score = np.array([0.5, 0.9, 0.8, 0.8, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.3])

    assert lift_top_decile(y_true, y_score) == pytest.approx(2.0)
    assert classification_metrics(y_true, y_score)["lift_top_decile"] == pytest.approx(2.0)


def test_single_class_is_rejected() -> None:
    with pytest.raises(ValueError, match="single class"):
        classification_metrics(np.zeros(5), np.linspace(0, 1, 5))
    with pytest.raises(ValueError, match="single class"):
        classification_metrics(np.ones(5, dtype=bool), np.linspace(0, 1, 5))


def test_bad_classification_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="0/1"):
        classification_metrics(np.array([0, 2, 1]), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="same length"):
        classification_metrics(np.array([0, 1]), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="NaN"):
        classification_metrics(np.array([0, 1]), np.array([0.1, np.nan]))
