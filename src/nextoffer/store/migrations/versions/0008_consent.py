"""Consent: the consent history, the do-not-call list, customers' time zones.

Created 2026-12-06 14:00.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from nextoffer.store.migrations.columns import (
    BOOL,
    DATE,
    STR16,
    STR32,
    STR64,
    UTC_TIME,
    create_table,
    drop_tables,
    optional,
    primary_key,
    required,
)

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("customers", schema=None) as batch_op:
        # The zone of the customer's quiet hours; NULL: the region's, else the default.
        batch_op.add_column(sa.Column("timezone", STR64, nullable=True))
    create_table(
        "consent",
        required("customer_id", STR64),
        required("channel", STR32),
        required("changed_at", UTC_TIME),
        required("granted", BOOL),
        required("source", STR16),
        primary_key("customer_id", "channel", "changed_at"),
    )
    create_table(
        "do_not_call",
        required("customer_id", STR64),
        optional("listed_on", DATE),
        primary_key("customer_id"),
    )


def downgrade() -> None:
    """Revert this revision."""
    drop_tables("do_not_call", "consent")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_column("timezone")
