"""Console indexes: name prefix search, product holders, the latest churn label window.

Created 2026-11-30 12:00.
"""

from __future__ import annotations

from alembic import op

from nextoffer.store.migrations.columns import create_indexes

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    """Apply this revision."""
    if op.get_bind().dialect.name == "postgresql":
        # LIKE 'prefix%' can use a btree index only with the pattern operator class (or
        # the C collation); SQLite's index already serves the console's range queries.
        op.drop_index("ix_customers_display_name", table_name="customers")
        op.create_index(
            "ix_customers_display_name",
            "customers",
            ["display_name"],
            unique=False,
            postgresql_ops={"display_name": "text_pattern_ops"},
        )
    create_indexes("subscriptions", ("ix_subscriptions_product_end", ["product_id", "end_date"]))
    create_indexes("churn_labels", ("ix_churn_labels_as_of", ["as_of", "churned"]))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("churn_labels", schema=None) as batch_op:
        batch_op.drop_index("ix_churn_labels_as_of")
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_index("ix_subscriptions_product_end")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_customers_display_name", table_name="customers")
        op.create_index("ix_customers_display_name", "customers", ["display_name"], unique=False)
