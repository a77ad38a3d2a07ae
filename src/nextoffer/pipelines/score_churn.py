"""Score every customer's churn risk with a churn model and append it to the score history."""

from __future__ import annotations

import json
from datetime import datetime

import pandas as pd

from nextoffer.features.training import current_features
from nextoffer.models.churn import ChurnModel
from nextoffer.scoring.churn import score_customers
from nextoffer.store import Engine
from nextoffer.store.churn_scores import append_scores

SCORE_BLOCK_ROWS = 100_000


def score_all_customers(
    engine: Engine,
    model: ChurnModel,
    model_version: str,
    scored_at: datetime,
    thresholds: tuple[float, float],
) -> dict[str, int]:
    """Append one churn score per customer at `scored_at`; returns counts per band.

    Rows are keyed (customer_id, scored_at), so re-running a scoring of the same instant
    never duplicates rows; earlier scores stay as the history.
    """
    with engine.connect() as conn:
        features = current_features(conn)
    bands: dict[str, int] = {}
    for start in range(0, len(features), SCORE_BLOCK_ROWS):
        block = score_customers(model, features.iloc[start : start + SCORE_BLOCK_ROWS], thresholds)
        block["scored_at"] = pd.Timestamp(scored_at)
        block["model_version"] = model_version
        rows = block.assign(top_reasons=[json.dumps(r) for r in block["top_reasons"]])
        # A scoring instant is written once (a re-run of the same instant adds nothing).
        append_scores(engine, rows)
        for band, count in block["band"].value_counts().items():
            bands[str(band)] = bands.get(str(band), 0) + int(count)
    return bands
