"""The promotion policy on plain records: no MLflow, no registry, no files."""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from nextoffer.domain.errors import RegistryError
from nextoffer.registry import promotion
from nextoffer.registry.batch import RunBatch, mlflow_name, original_names
from nextoffer.registry.protocol import (
    TAG_CHAMPION_VALUE,
    TAG_CHAMPION_VERSION,
    TAG_DECISION,
    TAG_METRIC_NAMES,
    TAG_PRIMARY_METRIC,
    ModelVersionInfo,
)


def version(
    number: int,
    metrics: dict[str, float] | None = None,
    *,
    kind: str = "offers",
    primary: str = "ndcg@10",
    pruned: bool = False,
) -> ModelVersionInfo:
    return ModelVersionInfo(
        kind=kind,
        version=number,
        run_id=f"run{number}",
        created_at=datetime(2026, 1, number, tzinfo=UTC),
        metrics=dict(metrics or {}),
        params={},
        tags={TAG_PRIMARY_METRIC: primary},
        is_champion=False,
        artifacts_deleted=pruned,
    )


def decide(
    champion: ModelVersionInfo | None, value: float, *, margin: float = 0.0, higher: bool = True
) -> promotion.Decision:
    return promotion.decide(
        "offers",
        0,
        champion,
        primary_metric="ndcg@10",
        challenger_value=value,
        margin=margin,
        higher_is_better=higher,
    )


def test_policy_needs_no_mlflow() -> None:
    code = (
        "import sys, nextoffer.registry.promotion, nextoffer.registry.batch; "
        "print('mlflow' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_first_version_is_promoted() -> None:
    decision = decide(None, 0.3)
    assert decision.promoted and decision.champion_version is None
    assert decision.reason == "first version: there was no champion"


def test_better_worse_and_equal() -> None:
    champion = version(2, {"ndcg@10": 0.431})
    assert decide(champion, 0.44).promoted
    worse = decide(champion, 0.412)
    assert not worse.promoted
    assert worse.reason == "ndcg@10 0.412 is not better than champion v2's 0.431"
    assert (worse.champion_version, worse.champion_value) == (2, 0.431)
    assert not decide(champion, 0.431).promoted  # equal never promotes


def test_margin_is_relative_to_the_champion() -> None:
    champion = version(1, {"ndcg@10": 0.40})
    small = decide(champion, 0.403, margin=0.01)
    assert not small.promoted
    assert small.reason == "ndcg@10 0.403 is not better than champion v1's 0.4 by more than 1 %"
    assert decide(champion, 0.405, margin=0.01).promoted


def test_lower_is_better() -> None:
    champion = version(3, {"ndcg@10": 0.45})
    assert decide(champion, 0.40, higher=False).promoted
    within = decide(champion, 0.44, margin=0.1, higher=False)
    assert not within.promoted
    assert within.reason.endswith("by more than 10 % (lower is better)")


def test_a_champion_without_the_metric_is_never_replaced_blindly() -> None:
    for metrics in ({}, {"ndcg@10": math.nan}):
        decision = decide(version(4, metrics), 0.9)
        assert not decision.promoted and decision.champion_value is None
        assert "promote by hand" in decision.reason


def test_challenger_value_checks() -> None:
    assert promotion.challenger_value({"auc": 0.7}, "auc", 0.0) == 0.7
    with pytest.raises(ValueError, match="primary metric"):
        promotion.challenger_value({"auc": 0.7}, "x", 0.0)
    # A NaN is not an error: the decision calls it degenerate and never promotes it.
    assert math.isnan(promotion.challenger_value({"auc": math.nan}, "auc", 0.0))
    for margin in (-0.1, math.inf):
        with pytest.raises(ValueError, match="margin"):
            promotion.challenger_value({"auc": 0.7}, "auc", margin)


def test_decision_tags_record_the_decision() -> None:
    decision = decide(version(2, {"ndcg@10": 0.5}), 0.6)
    tags = promotion.decision_tags(
        decision, margin=0.0, higher_is_better=True, user_tags={"git": "abc"}
    )
    assert tags["git"] == "abc" and tags[TAG_DECISION] == "promoted"
    assert tags[TAG_CHAMPION_VERSION] == "2" and tags[TAG_CHAMPION_VALUE] == "0.5"
    first = promotion.decision_tags(
        decide(None, 0.6), margin=0.0, higher_is_better=True, user_tags={}
    )
    assert TAG_CHAMPION_VERSION not in first and TAG_CHAMPION_VALUE not in first


def test_hand_promotion() -> None:
    target, current = version(3, {"ndcg@10": 0.42}), version(2, {"ndcg@10": 0.45})
    reason = promotion.promotion_reason("  A/B test won  ")
    assert reason == "promoted by hand: A/B test won"
    decision = promotion.hand_promotion(target, current, reason)
    assert decision.promoted and decision.champion_version == 2
    assert (decision.challenger_value, decision.champion_value) == (0.42, 0.45)
    again = promotion.hand_promotion(target, target, reason)
    assert not again.promoted and again.reason == "v3 is already the champion"
    with pytest.raises(ValueError, match="reason"):
        promotion.promotion_reason(" ")
    with pytest.raises(RegistryError, match="pruned"):
        promotion.hand_promotion(version(1, pruned=True), current, reason)


def test_rollback_is_a_stack() -> None:
    assert promotion.rollback_target("offers", 4, [1, 3, 4]) == (3, [1, 3])
    # The alias moved outside nextoffer: the history's last entry is the way back.
    assert promotion.rollback_target("offers", 5, [1, 3, 4]) == (4, [1, 3, 4])
    with pytest.raises(RegistryError, match="no champion to roll back"):
        promotion.rollback_target("offers", None, [])
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        promotion.rollback_target("offers", 1, [1])
    decision = promotion.rollback_decision(
        version(3, {"ndcg@10": 0.4}), version(4, {"ndcg@10": 0.5})
    )
    assert decision.reason == "rolled back from v4 to v3"
    assert (decision.version, decision.champion_version, decision.champion_value) == (3, 4, 0.5)
    with pytest.raises(RegistryError, match="pruned"):
        promotion.rollback_decision(version(3, pruned=True), version(4))


def test_versions_to_keep() -> None:
    newest_first = [7, 6, 5, 4, 3, 2, 1]
    assert promotion.versions_to_keep(newest_first, 5, 4, [1, 3, 4]) == {3, 4, 5, 6, 7}
    assert promotion.versions_to_keep(newest_first, 2, 2, [1, 2]) == {1, 2, 6, 7}
    assert promotion.versions_to_keep(newest_first, 2, None, []) == {6, 7}


def test_history_round_trip() -> None:
    assert promotion.parse_history("1,3, 4,x,") == [1, 3, 4]
    assert promotion.format_history([1, 3, 4]) == "1,3,4"
    assert promotion.parse_history("") == []


def test_model_names() -> None:
    assert promotion.model_name("offers") == "nextoffer-offers"
    with pytest.raises(ValueError, match="unknown model kind"):
        promotion.model_name("upsell")


def test_run_batch_renames_and_chunks() -> None:
    batch = RunBatch.build(
        {f"p{i}": i for i in range(150)}, {"ndcg@10": 0.4, "auc": 0.7}, {"git": "abc"}
    )
    assert ("ndcg_at_10", 0.4) in batch.metrics
    tags = dict(batch.tags)
    assert original_names(tags[TAG_METRIC_NAMES]) == {"ndcg_at_10": "ndcg@10"}
    chunks = list(batch.chunks())
    assert [len(c.params) for c in chunks] == [100, 50]
    assert sum(len(c.tags) for c in chunks) == len(batch.tags)
    assert all(len(c.params) + len(c.tags) <= 100 for c in chunks)
    assert mlflow_name("ndcg@10") == "ndcg_at_10" and mlflow_name("hit rate/5") == "hit rate_5"
    with pytest.raises(ValueError, match="would both be stored"):
        RunBatch.build({}, {"a@b": 1.0, "a_at_b": 2.0}, {})
    with pytest.raises(ValueError, match="not a number"):
        RunBatch.build({}, {"auc": True}, {})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="6000"):
        RunBatch.build({"long": "x" * 6001}, {}, {})


def _decide_with(
    champion: ModelVersionInfo | None,
    value: float,
    *,
    rescored: float | None = None,
    floor: float | None = None,
) -> promotion.Decision:
    return promotion.decide(
        "offers",
        0,
        champion,
        primary_metric="ndcg@10",
        challenger_value=value,
        margin=0.0,
        higher_is_better=True,
        champion_rescored=rescored,
        floor=floor,
    )


@pytest.mark.parametrize("value", [0.0, math.nan, math.inf, 0.2])
def test_a_degenerate_first_version_is_never_promoted(value: float) -> None:
    # 0.2 is degenerate only because popularity reaches 0.25 on the same test rows.
    decision = _decide_with(None, value, floor=0.25)
    assert not decision.promoted
    assert decision.reason.startswith("degenerate:")


def test_the_champion_is_compared_on_the_challengers_test_data() -> None:
    # Recorded 0.9 on its own (older) data, 0.3 when re-scored on today's test rows.
    champion = version(1, {"ndcg@10": 0.9})
    decision = _decide_with(champion, 0.5, rescored=0.3, floor=0.1)
    assert decision.promoted
    assert decision.champion_value == 0.3
    assert "on the same test data" in decision.reason
    kept = _decide_with(champion, 0.5, rescored=0.6, floor=0.1)
    assert not kept.promoted and kept.champion_value == 0.6
