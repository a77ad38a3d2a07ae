"""The feature table's columns by role: what models read, without importing pandas."""

from __future__ import annotations

from nextoffer.domain.vocabulary import ProductCategory

HOLDING_COLUMNS = {
    ProductCategory.MOBILE_PLAN: "mobile_held",
    ProductCategory.BROADBAND_PLAN: "broadband_held",
    ProductCategory.ADDON: "addons_held",
    ProductCategory.DEVICE: "devices_held",
    ProductCategory.BUNDLE: "bundles_held",
}
COUNT_COLUMNS = [
    "frequency_90d",
    "products_held",
    *HOLDING_COLUMNS.values(),
    "support_contacts_90d",
    "engagement_30d",
    "offers_accepted_180d",
]
FEATURE_COLUMNS = [
    "customer_id",
    "tenure_months",
    "contract_type",
    "payment_method",
    "region",
    "age_band",
    "plan_id",
    "arpu",
    "data_gb_month",
    "voice_min_month",
    "recency_days",
    "frequency_90d",
    "monetary_90d",
    "monetary_total",
    *COUNT_COLUMNS[1:],
]


# The customer attributes models use, by type: every feature column but the id.
MODEL_FEATURES = tuple(c for c in FEATURE_COLUMNS if c != "customer_id")
CATEGORICAL_FEATURES = ("contract_type", "payment_method", "region", "age_band", "plan_id")
NUMERIC_FEATURES = tuple(c for c in MODEL_FEATURES if c not in CATEGORICAL_FEATURES)

__all__ = [
    "CATEGORICAL_FEATURES",
    "COUNT_COLUMNS",
    "FEATURE_COLUMNS",
    "HOLDING_COLUMNS",
    "MODEL_FEATURES",
    "NUMERIC_FEATURES",
]
