"""The features job: compute every customer's features and segment, replace them atomically."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from sqlalchemy import Engine, delete, insert

from nextoffer.config import Settings
from nextoffer.features.builder import build_features, data_as_of
from nextoffer.features.segments import SegmentInfo, fit_segments
from nextoffer.store.bulk import upsert_frame
from nextoffer.store.runs import recorded_run, utcnow
from nextoffer.store.schema import Segment, UserFeatures

WRITE_CHUNK_ROWS = 100_000


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


def run_features(
    engine: Engine, settings: Settings, as_of: datetime | None = None
) -> FeaturesResult:
    """Compute features and segments as of `as_of` (default: the data's own clock)."""
    started = time.perf_counter()
    with recorded_run(engine, "features") as run:
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
        # One transaction: readers see the old features or the new ones, never a mix.
        with engine.begin() as conn:
            for start in range(0, len(features), WRITE_CHUNK_ROWS):
                upsert_frame(
                    conn,
                    UserFeatures.__table__,  # type: ignore[arg-type]
                    features.iloc[start : start + WRITE_CHUNK_ROWS],
                    ("customer_id",),
                )
            conn.execute(delete(UserFeatures).where(UserFeatures.computed_at != computed_at))
            conn.execute(delete(Segment))
            if segmentation.segments:
                conn.execute(
                    insert(Segment),
                    [
                        {
                            "segment_id": s.segment_id,
                            "name": s.name,
                            "description": s.description,
                            "size": s.size,
                            "centroid": s.centroid,
                            "computed_at": computed_at,
                        }
                        for s in segmentation.segments
                    ],
                )
        run.counts = {"customers": len(features), "segments": len(segmentation.segments)}
        return FeaturesResult(
            run.run_id, as_of, len(features), segmentation.segments, time.perf_counter() - started
        )
