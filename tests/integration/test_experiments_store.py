"""Experiments in the database on SQLite and PostgreSQL: create, list, stop."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from nextoffer.domain.errors import NotFoundError
from nextoffer.domain.experiments import (
    ExperimentStatus,
    ExperimentUnit,
    Strategy,
    Variant,
)
from nextoffer.store.engine import make_engine
from nextoffer.store.experiments import (
    create_experiment,
    get_experiment,
    list_experiments,
    running_experiments,
    stop_experiment,
)
from nextoffer.store.migrate import upgrade

VARIANTS = (
    Variant("control", Strategy.CONTROL),
    Variant("B", Strategy.CHAMPION, weight=2.0),
    Variant("C", Strategy.MODEL_VERSION, weight=0.5, model_version=3),
)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


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
    for call in (get_experiment, stop_experiment):
        with pytest.raises(NotFoundError, match=missing):
            call(engine, missing)
