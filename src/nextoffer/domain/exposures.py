"""Exposures: a unit served an answer (treated) or held out with the answer it would have had."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, Final

PRODUCT_SEPARATOR: Final = "|"
"""Between the product ids of `exposures.product_ids`, best first."""


class Arm(StrEnum):
    """Whether the unit was shown the offers or held out with them logged."""

    TREATED = "treated"
    CONTROL = "control"


class ExposureSource(StrEnum):
    """What exposed the unit: an API answer, a campaign export, an operator's import."""

    API = "api"
    CAMPAIGN = "campaign"
    IMPORT = "import"


def exposure_id(unit_id: str, day: date, experiment_id: str | None = None) -> str:
    """The id of a unit's exposure on `day`: at most one per unit a day (and per experiment).

    `"{unit_id}@{YYYY-MM-DD}"`, plus `"#{experiment_id}"` when an experiment tagged it; the
    database ignores a second row with the same id, so repeats cost nothing.
    """
    base = f"{unit_id}@{day.isoformat()}"
    return base if experiment_id is None else f"{base}#{experiment_id}"


@dataclass(frozen=True)
class ExposureRecord:
    """One row of the `exposures` table; for the control arm, the answer it would have had."""

    exposure_id: str
    customer_id: str
    exposed_at: datetime
    arm: Arm
    product_ids: tuple[str, ...]
    experiment_id: str | None = None
    variant: str | None = None
    unit_id: str | None = None
    channel: str | None = None
    source: ExposureSource = ExposureSource.API
    model_version: str | None = None

    def __post_init__(self) -> None:
        """Coerce the enums (as read back from JSON); an exposure needs a zone and products."""
        object.__setattr__(self, "arm", Arm(self.arm))
        object.__setattr__(self, "source", ExposureSource(self.source))
        object.__setattr__(self, "product_ids", tuple(self.product_ids))
        if self.exposed_at.tzinfo is None or self.exposed_at.utcoffset() is None:
            raise ValueError("exposed_at has no time zone")
        if not self.product_ids:
            raise ValueError("an exposure names at least one product")

    @property
    def universal_control(self) -> bool:
        """True for a customer of the universal control group (no experiment tag)."""
        return self.arm is Arm.CONTROL and self.experiment_id is None

    def row(self) -> dict[str, Any]:
        """The `exposures` row; the time in UTC (SQLite keeps the wall time only)."""
        return {
            "exposure_id": self.exposure_id,
            "customer_id": self.customer_id,
            "exposed_at": self.exposed_at.astimezone(UTC),
            "arm": self.arm.value,
            "product_ids": PRODUCT_SEPARATOR.join(self.product_ids),
            "experiment_id": self.experiment_id,
            "variant": self.variant,
            "unit_id": self.unit_id,
            "channel": self.channel,
            "source": self.source.value,
            "model_version": self.model_version,
        }

    def to_json(self) -> str:
        """One spool line (without its newline)."""
        payload = self.row()
        payload["exposed_at"] = self.exposed_at.isoformat()
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str | bytes) -> ExposureRecord:
        """The exposure of one spool line; ValueError (or TypeError) when it is not one."""
        payload = json.loads(line)
        if not isinstance(payload, dict):
            raise ValueError("not a JSON object")
        products = payload.pop("product_ids", None)
        stamp = payload.pop("exposed_at", None)
        if not isinstance(products, str) or not isinstance(stamp, str):
            raise ValueError("product_ids and exposed_at must be strings")
        return cls(
            exposed_at=datetime.fromisoformat(stamp),
            product_ids=tuple(p for p in products.split(PRODUCT_SEPARATOR) if p),
            **payload,
        )


def new_exposure(
    customer_id: str,
    at: datetime,
    arm: Arm,
    product_ids: Sequence[str],
    *,
    unit_id: str | None = None,
    experiment_id: str | None = None,
    variant: str | None = None,
    channel: str | None = None,
    source: ExposureSource = ExposureSource.API,
    model_version: str | None = None,
) -> ExposureRecord:
    """An exposure of `unit_id` (default: the customer) on the UTC day of `at`, id included."""
    unit = unit_id or customer_id
    day = at.astimezone(UTC).date()
    return ExposureRecord(
        exposure_id=exposure_id(unit, day, experiment_id),
        customer_id=customer_id,
        exposed_at=at,
        arm=arm,
        product_ids=tuple(product_ids),
        experiment_id=experiment_id,
        variant=variant,
        unit_id=unit,
        channel=channel,
        source=source,
        model_version=model_version,
    )
