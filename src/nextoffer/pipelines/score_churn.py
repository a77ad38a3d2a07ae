"""Score every customer's churn risk with a churn model and append it to the score history."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from nextoffer.features.training import current_features
from nextoffer.models.churn import ChurnModel, risk_band
from nextoffer.pipelines.train_churn import churn_frame
from nextoffer.store.bulk import upsert_frame
from nextoffer.store.schema import ChurnScore

SCORE_BLOCK_ROWS = 100_000
# Plain-language names of the features a reason can point at.
FEATURE_PHRASES: Mapping[str, str] = {
    "tenure_months": "tenure (months)",
    "contract_type": "contract",
    "payment_method": "payment method",
    "region": "region",
    "age_band": "age band",
    "plan_id": "plan",
    "arpu": "monthly spend",
    "data_gb_month": "data use (GB/month)",
    "voice_min_month": "voice use (min/month)",
    "recency_days": "days since last purchase",
    "frequency_90d": "purchases in 90 days",
    "monetary_90d": "spend in 90 days",
    "monetary_total": "total spend",
    "products_held": "products held",
    "mobile_held": "mobile plans held",
    "broadband_held": "broadband plans held",
    "addons_held": "add-ons held",
    "devices_held": "devices held",
    "bundles_held": "bundles held",
    "support_contacts_90d": "support calls and complaints in 90 days",
    "engagement_30d": "web and app visits in 30 days",
    "offers_accepted_180d": "offers accepted in 180 days",
}


def reason_text(feature: str, value: Any) -> str:
    """'contract: month_to_month', 'tenure (months): 2.5' — what pushed the risk up."""
    phrase = FEATURE_PHRASES.get(feature, feature)
    if isinstance(value, float):
        value = (
            "unknown" if np.isnan(value) else f"{value:g}" if value.is_integer() else f"{value:.1f}"
        )
    return f"{phrase}: {value}"


# Bands whose customers get reasons in batch scoring. Contributions (TreeSHAP) cost far more
# than the score itself; a low-risk customer's reasons are computed when someone asks.
EXPLAINED_BANDS = ("medium", "high")


def score_customers(
    model: ChurnModel,
    features: pd.DataFrame,
    thresholds: tuple[float, float],
    top: int = 3,
    explained_bands: tuple[str, ...] | None = EXPLAINED_BANDS,
) -> pd.DataFrame:
    """customer_id, score, band and top_reasons for every row of `features`.

    Reasons are computed for the customers in `explained_bands` (None: everyone); the others
    get an empty list.
    """
    frame = churn_frame(features)
    scores = model.predict_proba(frame)
    bands = risk_band(scores, thresholds)
    explain = np.ones(len(frame), dtype=bool)
    if explained_bands is not None:
        explain = np.isin(bands, explained_bands)
    reasons: list[list[dict[str, Any]]] = [[] for _ in range(len(frame))]
    if explain.any():
        rows = np.flatnonzero(explain)
        for row, found in zip(rows, model.explain(frame.iloc[rows], top=top), strict=True):
            reasons[row] = found
    return pd.DataFrame(
        {
            "customer_id": features["customer_id"].to_numpy(),
            "score": np.round(scores, 6),
            "band": bands,
            "top_reasons": [
                [
                    {
                        "feature": r["feature"],
                        "value": r["value"],
                        "contribution": round(float(r["contribution"]), 4),
                        "text": reason_text(r["feature"], r["value"]),
                    }
                    for r in row
                ]
                for row in reasons
            ],
        }
    )


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
        with engine.begin() as conn:
            # A scoring instant is written once: rows already there (a re-run of the same
            # instant) are kept, and JSON columns never need comparing.
            upsert_frame(
                conn,
                ChurnScore.__table__,  # type: ignore[arg-type]
                rows,
                ("customer_id", "scored_at"),
                on_conflict="nothing",
            )
        for band, count in block["band"].value_counts().items():
            bands[str(band)] = bands.get(str(band), 0) + int(count)
    return bands
