"""Churn frames: the churn model's input columns, and scores, bands and reasons per customer.

Shared by batch scoring (`pipelines.score_churn`), training and the API's on-demand
explanations. pandas and the model's libraries are imported inside the functions: the
serving process imports this module at start-up and loads them on its first explanation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from nextoffer.models.lean_churn import LeanChurnModel

if TYPE_CHECKING:
    import pandas as pd

    from nextoffer.models.churn import ChurnModel
    from nextoffer.models.lean_churn import ServedChurnModel

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


def churn_frame(features: pd.DataFrame, columns: Sequence[str] = ()) -> pd.DataFrame:
    """The model's input columns, in order: `MODEL_FEATURES`, then `columns`.

    `columns` are the custom attributes it uses (missing ones are NaN). `segment_id` is
    not among them: it is itself a clustering of these columns, refitted each run.
    """
    from nextoffer.features.builder import MODEL_FEATURES

    frame = features.reindex(columns=[*MODEL_FEATURES, *columns])
    return frame.reset_index(drop=True)


def model_frame(model: ChurnModel, features: pd.DataFrame) -> pd.DataFrame:
    """The columns `model` was trained on (custom attributes included), in its order."""
    from nextoffer.features.builder import MODEL_FEATURES

    extra = [c for c in model.schema.features if c not in MODEL_FEATURES]
    return churn_frame(features, extra).loc[:, list(model.schema.features)]


def score_customers(
    model: ServedChurnModel,
    features: pd.DataFrame,
    thresholds: tuple[float, float],
    top: int = 3,
    explained_bands: tuple[str, ...] | None = EXPLAINED_BANDS,
) -> pd.DataFrame:
    """customer_id, score, band and top_reasons for every row of `features`.

    Reasons are computed for the customers in `explained_bands` (None: everyone); the others
    get an empty list.
    """
    import pandas as pd

    from nextoffer.models.churn import risk_band

    if isinstance(model, LeanChurnModel):
        # A serving process's model (e.g. scoring an uploaded file): rows as mappings.
        records = [{str(k): v for k, v in r.items()} for r in features.to_dict("records")]
        scores = model.predict_proba(records)
    else:
        frame = model_frame(model, features)
        scores = model.predict_proba(frame)
    bands = risk_band(scores, thresholds)
    explain = np.ones(len(features), dtype=bool)
    if explained_bands is not None:
        explain = np.isin(bands, explained_bands)
    reasons: list[list[dict[str, Any]]] = [[] for _ in range(len(features))]
    if explain.any():
        rows = np.flatnonzero(explain)
        if isinstance(model, LeanChurnModel):
            found = model.explain([records[i] for i in rows], top=top)
        else:
            found = model.explain(frame.iloc[rows], top=top)
        for row, row_reasons in zip(rows, found, strict=True):
            reasons[row] = row_reasons
    return pd.DataFrame(
        {
            "customer_id": features["customer_id"].to_numpy(),
            "score": np.round(scores, 6),
            "band": bands,
            "top_reasons": [reason_entries(row) for row in reasons],
        }
    )


def reason_entries(reasons: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A model's explanation of one customer as stored and served: rounded, with its text."""
    return [
        {
            "feature": r["feature"],
            "value": r["value"],
            "contribution": round(float(r["contribution"]), 4),
            "text": reason_text(r["feature"], r["value"]),
        }
        for r in reasons
    ]


def live_reasons(
    model: ServedChurnModel, rows: Sequence[Mapping[str, Any]], top: int = 3
) -> list[list[dict[str, Any]]]:
    """Top reasons of customers given as feature rows (`feature_rows`): the API's explanation.

    The lean model needs no pandas; the full one (an old booster the lean cannot walk) gets
    the rows as a frame.
    """
    if isinstance(model, LeanChurnModel):
        found = model.explain(rows, top=top)
    else:
        import pandas as pd

        found = model.explain(model_frame(model, pd.DataFrame(list(rows))), top=top)
    return [reason_entries(r) for r in found]
