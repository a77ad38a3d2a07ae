"""Initial schema: catalogue, customers, holdings, activity, features, scores, runs.

Revision ID: 0001
Revises:
Create Date: 2026-11-23 09:43:40.651239
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "events",
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("product_id", sa.String(length=64), nullable=True),
        sa.Column("channel", sa.String(length=32), nullable=True),
        sa.Column("session_id", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_events")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_customer_ts", ["customer_id", "ts"], unique=False)
        batch_op.create_index("ix_events_type_ts", ["event_type", "ts"], unique=False)

    op.create_table(
        "job_runs",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("job", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_job_runs")),
    )
    with op.batch_alter_table("job_runs", schema=None) as batch_op:
        batch_op.create_index("ix_job_runs_job_started", ["job", "started_at"], unique=False)

    op.create_table(
        "products",
        sa.Column("product_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("price", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("margin", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("upfront_price", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("contract_types", sa.String(length=200), nullable=False),
        sa.Column("min_tenure_months", sa.Integer(), nullable=False),
        sa.Column("regions", sa.Text(), nullable=False),
        sa.Column("channels", sa.String(length=200), nullable=False),
        sa.Column("requires_category", sa.String(length=32), nullable=True),
        sa.Column("is_retention_offer", sa.Boolean(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("product_id", name=op.f("pk_products")),
    )
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_products_category"), ["category"], unique=False)

    op.create_table(
        "quarantine",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_sha256", sa.String(length=64), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("quarantined_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantine")),
        sa.UniqueConstraint("source_sha256", "entity", "line", name="uq_quarantine_source_line"),
    )
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.create_index("ix_quarantine_entity_at", ["entity", "quarantined_at"], unique=False)

    op.create_table(
        "segments",
        sa.Column("segment_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("centroid", sa.JSON(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("segment_id", name=op.f("pk_segments")),
    )
    op.create_table(
        "transactions",
        sa.Column("transaction_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("product_id", sa.String(length=64), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("amount", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("transaction_id", name=op.f("pk_transactions")),
    )
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.create_index("ix_transactions_customer_ts", ["customer_id", "ts"], unique=False)

    op.create_table(
        "customers",
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("age_band", sa.String(length=8), nullable=False),
        sa.Column("region", sa.String(length=64), nullable=False),
        sa.Column("signup_date", sa.Date(), nullable=False),
        sa.Column("contract_type", sa.String(length=32), nullable=False),
        sa.Column("payment_method", sa.String(length=32), nullable=False),
        sa.Column("plan_id", sa.String(length=64), nullable=True),
        sa.Column("arpu", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("data_gb_month", sa.Float(), nullable=True),
        sa.Column("voice_min_month", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["plan_id"], ["products.product_id"], name=op.f("fk_customers_plan_id_products")
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_customers")),
    )
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.create_index("ix_customers_display_name", ["display_name"], unique=False)
        batch_op.create_index(batch_op.f("ix_customers_region"), ["region"], unique=False)

    op.create_table(
        "churn_labels",
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("churned", sa.Boolean(), nullable=False),
        sa.Column("churn_date", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.customer_id"],
            name=op.f("fk_churn_labels_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("customer_id", "as_of", name=op.f("pk_churn_labels")),
    )
    op.create_table(
        "churn_scores",
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("band", sa.String(length=16), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("top_reasons", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.customer_id"],
            name=op.f("fk_churn_scores_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("customer_id", "scored_at", name=op.f("pk_churn_scores")),
    )
    with op.batch_alter_table("churn_scores", schema=None) as batch_op:
        batch_op.create_index("ix_churn_scores_scored_at_band", ["scored_at", "band"], unique=False)

    op.create_table(
        "contact_history",
        sa.Column("contact_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("product_id", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=True),
        sa.Column("contacted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.customer_id"],
            name=op.f("fk_contact_history_customer_id_customers"),
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.product_id"],
            name=op.f("fk_contact_history_product_id_products"),
        ),
        sa.PrimaryKeyConstraint("contact_id", name=op.f("pk_contact_history")),
    )
    with op.batch_alter_table("contact_history", schema=None) as batch_op:
        batch_op.create_index(
            "ix_contact_history_customer_product",
            ["customer_id", "product_id", "contacted_at"],
            unique=False,
        )

    op.create_table(
        "subscriptions",
        sa.Column("subscription_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("product_id", sa.String(length=64), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("monthly_price", sa.Numeric(precision=12, scale=2), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.customer_id"],
            name=op.f("fk_subscriptions_customer_id_customers"),
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.product_id"],
            name=op.f("fk_subscriptions_product_id_products"),
        ),
        sa.PrimaryKeyConstraint("subscription_id", name=op.f("pk_subscriptions")),
    )
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_subscriptions_customer_id", ["customer_id", "end_date"], unique=False
        )
        batch_op.create_index("ix_subscriptions_product_id", ["product_id"], unique=False)

    op.create_table(
        "user_features",
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("segment_id", sa.Integer(), nullable=True),
        sa.Column("tenure_months", sa.Float(), nullable=False),
        sa.Column("contract_type", sa.String(length=32), nullable=False),
        sa.Column("payment_method", sa.String(length=32), nullable=False),
        sa.Column("region", sa.String(length=64), nullable=False),
        sa.Column("age_band", sa.String(length=8), nullable=False),
        sa.Column("plan_id", sa.String(length=64), nullable=True),
        sa.Column("arpu", sa.Float(), nullable=False),
        sa.Column("data_gb_month", sa.Float(), nullable=False),
        sa.Column("voice_min_month", sa.Float(), nullable=False),
        sa.Column("recency_days", sa.Float(), nullable=True),
        sa.Column("frequency_90d", sa.Integer(), nullable=False),
        sa.Column("monetary_90d", sa.Float(), nullable=False),
        sa.Column("monetary_total", sa.Float(), nullable=False),
        sa.Column("products_held", sa.Integer(), nullable=False),
        sa.Column("mobile_held", sa.Integer(), nullable=False),
        sa.Column("broadband_held", sa.Integer(), nullable=False),
        sa.Column("addons_held", sa.Integer(), nullable=False),
        sa.Column("devices_held", sa.Integer(), nullable=False),
        sa.Column("bundles_held", sa.Integer(), nullable=False),
        sa.Column("support_contacts_90d", sa.Integer(), nullable=False),
        sa.Column("engagement_30d", sa.Integer(), nullable=False),
        sa.Column("offers_accepted_180d", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.customer_id"],
            name=op.f("fk_user_features_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_user_features")),
    )
    with op.batch_alter_table("user_features", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_user_features_segment_id"), ["segment_id"], unique=False
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("user_features", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_features_segment_id"))

    op.drop_table("user_features")
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_index("ix_subscriptions_product_id")
        batch_op.drop_index("ix_subscriptions_customer_id")

    op.drop_table("subscriptions")
    with op.batch_alter_table("contact_history", schema=None) as batch_op:
        batch_op.drop_index("ix_contact_history_customer_product")

    op.drop_table("contact_history")
    with op.batch_alter_table("churn_scores", schema=None) as batch_op:
        batch_op.drop_index("ix_churn_scores_scored_at_band")

    op.drop_table("churn_scores")
    op.drop_table("churn_labels")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customers_region"))
        batch_op.drop_index("ix_customers_display_name")

    op.drop_table("customers")
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.drop_index("ix_transactions_customer_ts")

    op.drop_table("transactions")
    op.drop_table("segments")
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.drop_index("ix_quarantine_entity_at")

    op.drop_table("quarantine")
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_products_category"))

    op.drop_table("products")
    with op.batch_alter_table("job_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_job_runs_job_started")

    op.drop_table("job_runs")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_type_ts")
        batch_op.drop_index("ix_events_customer_ts")

    op.drop_table("events")
