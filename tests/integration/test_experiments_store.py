"""Experiments in the database on SQLite and PostgreSQL: lifecycle, counts, hand-worked results."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from nextoffer.domain.errors import NotFoundError
from nextoffer.domain.experiments import (
    ExperimentStatus,
    ExperimentUnit,
    Strategy,
    Variant,
    VariantCounts,
)
from nextoffer.store.engine import make_engine
from nextoffer.store.experiments import (
    create_experiment,
    experiment_counts,
    experiment_results,
    get_experiment,
    list_experiments,
    running_experiments,
    stop_experiment,
)
from nextoffer.store.migrate import upgrade
from nextoffer.store.schema import Event

VARIANTS = (
    Variant("control", Strategy.CONTROL),
    Variant("B", Strategy.CHAMPION, weight=2.0),
    Variant("C", Strategy.MODEL_VERSION, weight=0.5, model_version=3),
)
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

# The event stream below, per variant:
#   control: 400 impressions from 200 customers (2 each), 48 clicks, 20 accepts, 12 declines
#   B:       400 impressions from 250 customers (150 x 2, 100 x 1), 64 clicks, 38 accepts, 6 declines
#   C:       nothing
# Conversion, control 20/400 = 0.05 vs B 38/400 = 0.095:
#   pooled = 58/800 = 0.0725, se = sqrt(0.0725 * 0.9275 * (2/400)) = sqrt(0.00033621875) = 0.0183363
#   z = 0.045 / 0.0183363 = 2.45415, p = erfc(2.45415 / √2) = 0.0141217, lift = 0.045/0.05 = 0.9
# CTR, control 48/400 = 0.12 vs B 64/400 = 0.16:
#   pooled = 0.14, se = sqrt(0.14 * 0.86 * 0.005) = sqrt(0.000602) = 0.0245357
#   z = 0.04 / 0.0245357 = 1.63028, p = 0.1030427, lift = 0.04/0.12 = 0.3333
# Wilson 95 %, z = 1.959964: 20/400 -> [0.0325974, 0.0759636]; 38/400 -> [0.0699966, 0.1277083]
CONV_P = 0.0141217
CONV_Z = 2.4541525
CTR_P = 0.1030427
WILSON_CONTROL = (0.0325974, 0.0759636)
WILSON_B = (0.0699966, 0.1277083)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def event(
    customer: str, event_type: str, experiment_id: str | None, variant: str | None, i: int
) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "customer_id": customer,
        "ts": T0 + timedelta(seconds=i),
        "event_type": event_type,
        "product_id": "ADD-ROAM",
        "channel": "app",
        "session_id": f"s-{customer}",
        "experiment_id": experiment_id,
        "variant": variant,
    }


def arm(
    experiment_id: str,
    variant: str,
    impressions_per_customer: list[int],
    clicks: int,
    accepts: int,
    declines: int,
) -> list[dict[str, Any]]:
    """Impressions as given per customer; responses from the first customers, one each."""
    customers = [f"{variant}-{i:04d}" for i in range(len(impressions_per_customer))]
    rows: list[dict[str, Any]] = []
    for customer, shown in zip(customers, impressions_per_customer, strict=True):
        rows += [
            event(customer, "offer_impression", experiment_id, variant, len(rows))
            for _ in range(shown)
        ]
    for event_type, n in (
        ("offer_click", clicks),
        ("offer_accept", accepts),
        ("offer_decline", declines),
    ):
        rows += [
            event(customers[i], event_type, experiment_id, variant, len(rows)) for i in range(n)
        ]
    return rows


def insert_stream(engine: Engine, experiment_id: str, other_id: str) -> None:
    rows = arm(experiment_id, "control", [2] * 200, clicks=48, accepts=20, declines=12)
    rows += arm(experiment_id, "B", [2] * 150 + [1] * 100, clicks=64, accepts=38, declines=6)
    # Noise that must not count: another experiment, a variant the design does not have,
    # a non-offer event tagged with the experiment, and untagged offer events.
    rows += arm(other_id, "control", [3] * 10, clicks=5, accepts=5, declines=0)
    rows += arm(experiment_id, "Z", [1] * 7, clicks=1, accepts=1, declines=1)
    rows.append(event("control-0000", "web_visit", experiment_id, "control", 0))
    rows.append(event("B-0000", "web_visit", experiment_id, "B", 0))
    rows += [event("X-1", "offer_accept", None, None, i) for i in range(5)]
    with engine.begin() as conn:
        conn.execute(insert(Event), rows)


def test_create_get_list_and_round_trip(engine: Engine) -> None:
    first = create_experiment(engine, "  Roaming add-on  ", "customer", VARIANTS, created_by="ana")
    assert uuid.UUID(first.experiment_id).version == 4
    assert first.name == "Roaming add-on"
    assert first.status is ExperimentStatus.RUNNING and first.running
    assert first.unit is ExperimentUnit.CUSTOMER
    assert first.stopped_at is None and first.created_at.tzinfo is not None

    again = get_experiment(engine, first.experiment_id)
    assert again == first
    assert again.variants == VARIANTS
    assert again.variants[2].model_version == 3 and again.variants[1].weight == 2.0
    assert again.design.control_variant.name == "control"

    second = create_experiment(
        engine, "Sessions", ExperimentUnit.SESSION, VARIANTS[1:], created_by=None
    )
    assert [e.experiment_id for e in list_experiments(engine)] == [
        second.experiment_id,
        first.experiment_id,
    ]
    assert running_experiments(engine) == [second, first]
    assert second.design.control_variant.name == "B"  # no control: the first variant


def test_create_rejects_invalid_designs(engine: Engine) -> None:
    with pytest.raises(ValueError, match="2 to 10 variants"):
        create_experiment(engine, "one arm", "customer", VARIANTS[:1])
    with pytest.raises(ValueError, match="unit"):
        create_experiment(engine, "x", "household", VARIANTS)
    with pytest.raises(ValueError, match="name"):
        create_experiment(engine, " ", "customer", VARIANTS)
    with pytest.raises(ValueError, match="name"):
        create_experiment(engine, "x" * 201, "customer", VARIANTS)
    assert list_experiments(engine) == []


def test_stop_is_idempotent_and_filters_status(engine: Engine) -> None:
    kept = create_experiment(engine, "kept", "customer", VARIANTS)
    record = create_experiment(engine, "stopped", "session", VARIANTS)
    stopped = stop_experiment(engine, record.experiment_id)
    assert stopped.status is ExperimentStatus.STOPPED and not stopped.running
    assert stopped.stopped_at is not None and stopped.stopped_at >= record.created_at
    assert stop_experiment(engine, record.experiment_id) == stopped
    assert get_experiment(engine, record.experiment_id) == stopped
    assert running_experiments(engine) == [kept]
    assert list_experiments(engine, status="stopped") == [stopped]
    assert list_experiments(engine, ExperimentStatus.RUNNING) == [kept]
    assert len(list_experiments(engine)) == 2


def test_unknown_ids_raise_not_found(engine: Engine) -> None:
    missing = str(uuid.uuid4())
    for call in (get_experiment, stop_experiment, experiment_counts, experiment_results):
        with pytest.raises(NotFoundError, match=missing):
            call(engine, missing)


def test_counts_and_results_match_hand_computed_values(engine: Engine) -> None:
    record = create_experiment(engine, "roaming", "customer", VARIANTS, created_by="ana")
    other = create_experiment(engine, "other", "customer", VARIANTS)
    assert experiment_counts(engine, record.experiment_id) == [
        VariantCounts("control"),
        VariantCounts("B"),
        VariantCounts("C"),
    ]
    insert_stream(engine, record.experiment_id, other.experiment_id)

    assert experiment_counts(engine, record.experiment_id) == [
        VariantCounts("control", 400, 48, 20, 12, unique_customers=200),
        VariantCounts("B", 400, 64, 38, 6, unique_customers=250),
        VariantCounts("C", 0, 0, 0, 0, unique_customers=0),
    ]
    assert experiment_counts(engine, other.experiment_id)[0] == VariantCounts(
        "control", 30, 5, 5, 0, unique_customers=10
    )

    results = experiment_results(engine, record.experiment_id)
    assert results.control == "control"
    control, b, c = results.variants
    assert control.conversion.rate == pytest.approx(0.05)
    assert control.ctr.rate == pytest.approx(0.12)
    assert (control.conversion.low, control.conversion.high) == pytest.approx(
        WILSON_CONTROL, abs=1e-6
    )
    assert b.conversion.rate == pytest.approx(0.095)
    assert b.ctr.rate == pytest.approx(0.16)
    assert (b.conversion.low, b.conversion.high) == pytest.approx(WILSON_B, abs=1e-6)
    assert b.conversion_vs_control is not None and b.ctr_vs_control is not None
    assert b.conversion_vs_control.z == pytest.approx(CONV_Z, abs=1e-4)
    assert b.conversion_vs_control.p_value == pytest.approx(CONV_P, abs=1e-5)
    assert b.conversion_vs_control.lift == pytest.approx(0.9)
    assert b.conversion_vs_control.significant
    assert b.ctr_vs_control.p_value == pytest.approx(CTR_P, abs=1e-5)
    assert b.ctr_vs_control.lift == pytest.approx(1 / 3)
    assert not b.ctr_vs_control.significant
    assert b.verdict == "B converts 90.0 % better than control (p = 0.014): significant"
    assert c.impressions == 0 and c.conversion.rate is None
    assert c.verdict == "C: no impressions yet"

    strict = experiment_results(engine, record.experiment_id, alpha=0.01)
    assert strict.variant("B").conversion_vs_control is not None
    assert not strict.variant("B").conversion_vs_control.significant  # type: ignore[union-attr]
    json.dumps(dataclasses.asdict(results), allow_nan=False)
