"""The `serving_champions` table: which version of each model kind serving loads, and from where."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, insert, select

from nextoffer.store.schema import ServingChampion


@dataclass(frozen=True)
class ServingChampionRow:
    """One kind's champion as serving sees it."""

    kind: str
    version: int
    files_url: str
    metrics: dict[str, float]
    promoted_at: datetime


def read_serving_champions(engine: Engine) -> dict[str, ServingChampionRow]:
    """Every recorded champion, by kind (one small query; serving runs it on each refresh)."""
    with engine.connect() as conn:
        rows = conn.execute(select(ServingChampion)).all()
    return {
        row.kind: ServingChampionRow(
            row.kind,
            int(row.version),
            row.files_url,
            {str(k): float(v) for k, v in (row.metrics or {}).items()},
            row.promoted_at,
        )
        for row in rows
    }


def record_serving_champion(
    engine: Engine,
    kind: str,
    version: int,
    files_url: str,
    metrics: Mapping[str, Any],
    at: datetime,
) -> None:
    """Make `version` the champion serving loads for `kind` (replacing any other)."""
    with engine.begin() as conn:
        # Delete and insert in one transaction: portable, and readers see one or the other.
        conn.execute(delete(ServingChampion).where(ServingChampion.kind == kind))
        conn.execute(
            insert(ServingChampion).values(
                kind=kind,
                version=version,
                files_url=files_url,
                metrics={str(k): float(v) for k, v in metrics.items()},
                promoted_at=at,
            )
        )


def forget_serving_champion(engine: Engine, kind: str) -> None:
    """Remove `kind`'s row: serving then asks the registry itself (no champion, or unknown)."""
    with engine.begin() as conn:
        conn.execute(delete(ServingChampion).where(ServingChampion.kind == kind))
