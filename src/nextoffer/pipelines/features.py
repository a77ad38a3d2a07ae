"""The features job: compute every customer's features and segment, replace them atomically."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from nextoffer.config import Settings
from nextoffer.features.builder import build_features, data_as_of
from nextoffer.features.segments import SegmentInfo, fit_segments
from nextoffer.store import Engine
from nextoffer.store.features import replace_features
from nextoffer.store.runs import utcnow


@dataclass(frozen=True)
class FeaturesResult:
    """What one features run produced."""

    run_id: str
    as_of: datetime
    customers: int
    segments: list[SegmentInfo]
    seconds: float

    def summary(self) -> str:
        """The one-line summary printed at the end of a run."""
        sizes = ", ".join(f"{s.segment_id}:{s.size:,}" for s in self.segments)
        return (
            f"features: {self.customers:,} customers as of {self.as_of:%Y-%m-%d %H:%M} UTC · "
            f"{len(self.segments)} segments ({sizes}) · {self.seconds:.1f} s"
        )

    def counts(self) -> dict[str, Any]:
        """The run's counts, as its job records them in `job_runs`."""
        return {"customers": self.customers, "segments": len(self.segments)}


def run_features(
    engine: Engine, settings: Settings, as_of: datetime | None = None, *, run_id: str | None = None
) -> FeaturesResult:
    """Compute features and segments as of `as_of` (default: the data's own clock).

    `run_id` names the job run this belongs to; the run is recorded by whoever started it
    (nextoffer.jobs), not here.
    """
    started = time.perf_counter()
    with engine.connect() as conn:
        as_of = as_of or data_as_of(conn, utcnow())
        features = build_features(conn, as_of)
    segmentation = fit_segments(
        features,
        settings.segments,
        seed=settings.random_seed,
        sample_rows=settings.segment_sample_rows,
    )
    features["segment_id"] = segmentation.labels
    computed_at = utcnow()
    features["as_of"] = pd.Timestamp(as_of)
    features["computed_at"] = pd.Timestamp(computed_at)
    segments = [
        {
            "segment_id": s.segment_id,
            "name": s.name,
            "description": s.description,
            "size": s.size,
            "centroid": s.centroid,
        }
        for s in segmentation.segments
    ]
    # One transaction: readers see the old features or the new ones, never a mix.
    replace_features(engine, features, computed_at, segments)
    return FeaturesResult(
        run_id or str(uuid.uuid4()),
        as_of,
        len(features),
        segmentation.segments,
        time.perf_counter() - started,
    )
