"""Initial schema: catalogue, customers, holdings, activity, features, scores, runs.

Created 2026-11-23 09:43:40.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from nextoffer.store.migrations.columns import (
    BOOL,
    DATE,
    FLOAT,
    INT,
    JSON,
    MONEY,
    STR8,
    STR16,
    STR32,
    STR36,
    STR64,
    STR128,
    STR200,
    TEXT,
    UTC_TIME,
    create_indexes,
    create_table,
    drop_tables,
    foreign_key,
    optional,
    primary_key,
    required,
    serial_id,
    unique,
)

revision = "0001"
down_revision = None


def upgrade() -> None:
    """Apply this revision."""
    create_table(
        "events",
        required("event_id", STR64),
        required("customer_id", STR64),
        required("ts", UTC_TIME),
        required("event_type", STR32),
        optional("product_id", STR64),
        optional("channel", STR32),
        optional("session_id", STR128),
        primary_key("event_id"),
    )
    create_indexes(
        "events",
        ("ix_events_customer_ts", ["customer_id", "ts"]),
        ("ix_events_type_ts", ["event_type", "ts"]),
    )

    create_table(
        "job_runs",
        required("run_id", STR36),
        required("job", STR32),
        required("status", STR16),
        required("started_at", UTC_TIME),
        optional("finished_at", UTC_TIME),
        required("counts", JSON),
        optional("message", TEXT),
        primary_key("run_id"),
    )
    create_indexes("job_runs", ("ix_job_runs_job_started", ["job", "started_at"]))

    create_table(
        "products",
        required("product_id", STR64),
        required("name", STR200),
        required("category", STR32),
        required("price", MONEY),
        required("margin", MONEY),
        required("upfront_price", MONEY),
        required("contract_types", STR200),
        required("min_tenure_months", INT),
        required("regions", TEXT),
        required("channels", STR200),
        optional("requires_category", STR32),
        required("is_retention_offer", BOOL),
        required("active", BOOL),
        primary_key("product_id"),
    )
    create_indexes("products", (op.f("ix_products_category"), ["category"]))

    create_table(
        "quarantine",
        serial_id(),
        required("entity", STR32),
        required("source", TEXT),
        required("source_sha256", STR64),
        required("line", INT),
        required("reason", TEXT),
        required("raw", TEXT),
        required("run_id", STR36),
        required("quarantined_at", UTC_TIME),
        primary_key("id"),
        unique("uq_quarantine_source_line", "source_sha256", "entity", "line"),
    )
    create_indexes("quarantine", ("ix_quarantine_entity_at", ["entity", "quarantined_at"]))

    create_table(
        "segments",
        sa.Column("segment_id", INT, autoincrement=False, nullable=False),
        required("name", STR200),
        required("description", TEXT),
        required("size", INT),
        required("centroid", JSON),
        required("computed_at", UTC_TIME),
        primary_key("segment_id"),
    )
    create_table(
        "transactions",
        required("transaction_id", STR64),
        required("customer_id", STR64),
        required("product_id", STR64),
        required("ts", UTC_TIME),
        required("type", STR32),
        required("amount", MONEY),
        optional("channel", STR32),
        primary_key("transaction_id"),
    )
    create_indexes("transactions", ("ix_transactions_customer_ts", ["customer_id", "ts"]))

    create_table(
        "customers",
        required("customer_id", STR64),
        required("display_name", STR200),
        required("age_band", STR8),
        required("region", STR64),
        required("signup_date", DATE),
        required("contract_type", STR32),
        required("payment_method", STR32),
        optional("plan_id", STR64),
        required("arpu", MONEY),
        optional("data_gb_month", FLOAT),
        optional("voice_min_month", FLOAT),
        foreign_key("plan_id", "products", "product_id"),
        primary_key("customer_id"),
    )
    create_indexes(
        "customers",
        ("ix_customers_display_name", ["display_name"]),
        (op.f("ix_customers_region"), ["region"]),
    )

    create_table(
        "churn_labels",
        required("customer_id", STR64),
        required("as_of", DATE),
        required("churned", BOOL),
        optional("churn_date", DATE),
        foreign_key("customer_id", "customers"),
        primary_key("customer_id", "as_of"),
    )
    create_table(
        "churn_scores",
        required("customer_id", STR64),
        required("scored_at", UTC_TIME),
        required("score", FLOAT),
        required("band", STR16),
        required("model_version", STR64),
        required("top_reasons", JSON),
        foreign_key("customer_id", "customers"),
        primary_key("customer_id", "scored_at"),
    )
    create_indexes("churn_scores", ("ix_churn_scores_scored_at_band", ["scored_at", "band"]))

    create_table(
        "contact_history",
        required("contact_id", STR64),
        required("customer_id", STR64),
        required("product_id", STR64),
        optional("channel", STR32),
        required("contacted_at", UTC_TIME),
        optional("outcome", STR32),
        foreign_key("customer_id", "customers"),
        foreign_key("product_id", "products"),
        primary_key("contact_id"),
    )
    create_indexes(
        "contact_history",
        ("ix_contact_history_customer_product", ["customer_id", "product_id", "contacted_at"]),
    )

    create_table(
        "subscriptions",
        required("subscription_id", STR64),
        required("customer_id", STR64),
        required("product_id", STR64),
        required("start_date", DATE),
        optional("end_date", DATE),
        optional("monthly_price", MONEY),
        foreign_key("customer_id", "customers"),
        foreign_key("product_id", "products"),
        primary_key("subscription_id"),
    )
    create_indexes(
        "subscriptions",
        ("ix_subscriptions_customer_id", ["customer_id", "end_date"]),
        ("ix_subscriptions_product_id", ["product_id"]),
    )

    create_table(
        "user_features",
        required("customer_id", STR64),
        required("as_of", UTC_TIME),
        required("computed_at", UTC_TIME),
        optional("segment_id", INT),
        required("tenure_months", FLOAT),
        required("contract_type", STR32),
        required("payment_method", STR32),
        required("region", STR64),
        required("age_band", STR8),
        optional("plan_id", STR64),
        required("arpu", FLOAT),
        required("data_gb_month", FLOAT),
        required("voice_min_month", FLOAT),
        optional("recency_days", FLOAT),
        required("frequency_90d", INT),
        required("monetary_90d", FLOAT),
        required("monetary_total", FLOAT),
        required("products_held", INT),
        required("mobile_held", INT),
        required("broadband_held", INT),
        required("addons_held", INT),
        required("devices_held", INT),
        required("bundles_held", INT),
        required("support_contacts_90d", INT),
        required("engagement_30d", INT),
        required("offers_accepted_180d", INT),
        foreign_key("customer_id", "customers"),
        primary_key("customer_id"),
    )
    create_indexes("user_features", (op.f("ix_user_features_segment_id"), ["segment_id"]))


def downgrade() -> None:
    """Revert this revision."""
    drop_tables(
        "user_features",
        "subscriptions",
        "contact_history",
        "churn_scores",
        "churn_labels",
        "customers",
        "transactions",
        "segments",
        "quarantine",
        "products",
        "job_runs",
        "events",
    )
