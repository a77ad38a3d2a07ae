"""Impact: the universal control group, exposures, impact results, offer cost.

Created 2026-12-06 10:20.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from nextoffer.store.migrations.columns import (
    DATE,
    FLOAT,
    INT,
    JSON,
    MONEY,
    STR16,
    STR32,
    STR36,
    STR64,
    STR200,
    TEXT,
    UTC_TIME,
    create_indexes,
    create_table,
    drop_tables,
    optional,
    primary_key,
    required,
)

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("products", schema=None) as batch_op:
        # What making the offer costs (a discount, a gift): incremental margin is net of it.
        batch_op.add_column(
            sa.Column("offer_cost", MONEY, nullable=False, server_default=sa.text("0"))
        )
    create_table(
        "control_group",
        required("customer_id", STR64),
        required("entered_on", DATE),
        optional("left_on", DATE),
        required("share", FLOAT),
        primary_key("customer_id"),
    )
    create_table(
        "exposures",
        required("exposure_id", STR200),
        required("customer_id", STR64),
        required("exposed_at", UTC_TIME),
        required("arm", STR16),
        required("product_ids", TEXT),
        optional("experiment_id", STR36),
        optional("variant", STR64),
        optional("unit_id", STR200),
        optional("channel", STR32),
        required("source", STR16),
        optional("model_version", STR64),
        primary_key("exposure_id"),
    )
    create_indexes(
        "exposures",
        ("ix_exposures_customer_at", ["customer_id", "exposed_at"]),
        ("ix_exposures_at", ["exposed_at"]),
        ("ix_exposures_experiment_variant", ["experiment_id", "variant"]),
    )
    create_table(
        "impact_results",
        required("run_id", STR36),
        required("computed_at", UTC_TIME),
        required("window_days", INT),
        required("period_start", DATE),
        required("period_end", DATE),
        required("report", JSON),
        primary_key("run_id"),
    )
    create_indexes("impact_results", ("ix_impact_results_computed_at", ["computed_at"]))


def downgrade() -> None:
    """Revert this revision."""
    drop_tables("impact_results", "exposures", "control_group")
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.drop_column("offer_cost")
