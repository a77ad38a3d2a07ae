"""Writing churn scores: each scoring instant is appended to the history once."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Engine

from nextoffer.store.schema import ChurnScore

if TYPE_CHECKING:
    import pandas as pd


def append_scores(engine: Engine, rows: pd.DataFrame) -> None:
    """Append churn scores (customer_id, scored_at, score, band, model_version, top_reasons).

    Rows are keyed (customer_id, scored_at): rows already there (a re-run of the same
    instant) are kept, and JSON columns never need comparing.
    """
    from nextoffer.store.bulk import upsert_frame  # pandas and pyarrow: only where written

    with engine.begin() as conn:
        upsert_frame(
            conn,
            ChurnScore.__table__,  # type: ignore[arg-type]
            rows,
            ("customer_id", "scored_at"),
            on_conflict="nothing",
        )
