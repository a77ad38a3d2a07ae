"""A/B experiments in the database: create, list and stop (units and outcomes: reads)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, insert, select, update

from nextoffer.domain.errors import NotFoundError
from nextoffer.domain.experiments import (
    ExperimentDesign,
    ExperimentStatus,
    ExperimentUnit,
    Strategy,
    Variant,
    parse_unit,
)
from nextoffer.store.runs import utcnow
from nextoffer.store.schema import Experiment

NAME_MAX = 200
"""The `experiments.name` column's length."""
CREATED_BY_MAX = 100
"""The `experiments.created_by` column's length."""

_COLUMNS = (
    Experiment.experiment_id,
    Experiment.name,
    Experiment.unit,
    Experiment.variants,
    Experiment.status,
    Experiment.created_at,
    Experiment.stopped_at,
    Experiment.created_by,
)


@dataclass(frozen=True)
class ExperimentRecord:
    """A stored experiment: its design, whether it runs, who made it and when."""

    experiment_id: str
    name: str
    design: ExperimentDesign
    status: ExperimentStatus
    created_at: datetime
    stopped_at: datetime | None
    created_by: str | None

    @property
    def unit(self) -> ExperimentUnit:
        """What is randomised: customers or sessions."""
        return self.design.unit

    @property
    def variants(self) -> tuple[Variant, ...]:
        """The variants, in the order assignment walks their weights."""
        return self.design.variants

    @property
    def running(self) -> bool:
        """True while the experiment assigns variants."""
        return self.status is ExperimentStatus.RUNNING


def create_experiment(
    engine: Engine,
    name: str,
    unit: ExperimentUnit | str,
    variants: Sequence[Variant],
    created_by: str | None = None,
) -> ExperimentRecord:
    """Store a new running experiment under a fresh uuid4; ValueError when the design is invalid."""
    name = name.strip()
    if not name or len(name) > NAME_MAX:
        raise ValueError(f"experiment name must be 1 to {NAME_MAX} characters")
    if created_by is not None and len(created_by) > CREATED_BY_MAX:
        raise ValueError(f"created_by must be at most {CREATED_BY_MAX} characters")
    design = ExperimentDesign(parse_unit(unit), tuple(variants))
    record = ExperimentRecord(
        experiment_id=str(uuid.uuid4()),
        name=name,
        design=design,
        status=ExperimentStatus.RUNNING,
        created_at=utcnow(),
        stopped_at=None,
        created_by=created_by,
    )
    with engine.begin() as conn:
        conn.execute(
            insert(Experiment).values(
                experiment_id=record.experiment_id,
                name=record.name,
                unit=design.unit.value,
                variants=[_variant_json(v) for v in design.variants],
                status=record.status.value,
                created_at=record.created_at,
                stopped_at=None,
                created_by=created_by,
            )
        )
    return record


def list_experiments(
    engine: Engine, status: ExperimentStatus | str | None = None
) -> list[ExperimentRecord]:
    """Experiments, newest first; only those with `status` when given."""
    query = select(*_COLUMNS).order_by(
        Experiment.created_at.desc(), Experiment.experiment_id.desc()
    )
    if status is not None:
        query = query.where(Experiment.status == ExperimentStatus(status).value)
    with engine.connect() as conn:
        return [_record(row) for row in conn.execute(query)]


def running_experiments(engine: Engine) -> list[ExperimentRecord]:
    """The experiments that assign variants now, newest first."""
    return list_experiments(engine, ExperimentStatus.RUNNING)


def get_experiment(engine: Engine, experiment_id: str) -> ExperimentRecord:
    """The experiment with this id; NotFoundError when there is none."""
    with engine.connect() as conn:
        return _stored(conn, experiment_id)


def stop_experiment(engine: Engine, experiment_id: str) -> ExperimentRecord:
    """Stop an experiment and return it; stopping a stopped one changes nothing.

    NotFoundError when there is none. The update only touches a running row, so two stops
    racing each other keep the first stop time.
    """
    with engine.begin() as conn:
        conn.execute(
            update(Experiment)
            .where(
                Experiment.experiment_id == experiment_id,
                Experiment.status == ExperimentStatus.RUNNING.value,
            )
            .values(status=ExperimentStatus.STOPPED.value, stopped_at=utcnow())
        )
        return _stored(conn, experiment_id)


def _stored(conn: Connection, experiment_id: str) -> ExperimentRecord:
    """The experiment with this id as `conn` sees it; NotFoundError when there is none."""
    query = select(*_COLUMNS).where(Experiment.experiment_id == experiment_id)
    row = conn.execute(query).first()
    if row is None:
        raise NotFoundError(f"no experiment with id {experiment_id!r}")
    return _record(row)


def _variant_json(variant: Variant) -> dict[str, Any]:
    return {
        "name": variant.name,
        "strategy": variant.strategy.value,
        "weight": variant.weight,
        "model_version": variant.model_version,
    }


def _variant_from_json(data: dict[str, Any]) -> Variant:
    return Variant(
        name=data["name"],
        strategy=Strategy(data["strategy"]),
        weight=float(data.get("weight", 1.0)),
        model_version=data.get("model_version"),
    )


def _record(row: Row[Any]) -> ExperimentRecord:
    return ExperimentRecord(
        experiment_id=row.experiment_id,
        name=row.name,
        design=ExperimentDesign(
            ExperimentUnit(row.unit), tuple(_variant_from_json(v) for v in row.variants)
        ),
        status=ExperimentStatus(row.status),
        created_at=row.created_at,
        stopped_at=row.stopped_at,
        created_by=row.created_by,
    )
