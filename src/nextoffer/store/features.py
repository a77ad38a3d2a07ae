"""Writing the features job's output: `user_features` and `segments`, replaced atomically."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, delete, insert

from nextoffer.store.bulk import upsert_frame
from nextoffer.store.schema import Segment, UserFeatures

if TYPE_CHECKING:
    import pandas as pd

WRITE_CHUNK_ROWS = 100_000


def replace_features(
    engine: Engine,
    features: pd.DataFrame,
    computed_at: datetime,
    segments: Sequence[Mapping[str, Any]],
    *,
    chunk_rows: int = WRITE_CHUNK_ROWS,
) -> None:
    """Store every customer's features (stamped `computed_at`) and the segments they name.

    One transaction: readers see the old features or the new ones, never a mix. Rows of
    customers the new run did not cover are dropped. `segments` are rows of `segments`
    without `computed_at` (segment_id, name, description, size, centroid).
    """
    with engine.begin() as conn:
        for start in range(0, len(features), chunk_rows):
            upsert_frame(
                conn,
                UserFeatures.__table__,  # type: ignore[arg-type]
                features.iloc[start : start + chunk_rows],
                ("customer_id",),
            )
        conn.execute(delete(UserFeatures).where(UserFeatures.computed_at != computed_at))
        conn.execute(delete(Segment))
        if segments:
            conn.execute(insert(Segment), [{**s, "computed_at": computed_at} for s in segments])
