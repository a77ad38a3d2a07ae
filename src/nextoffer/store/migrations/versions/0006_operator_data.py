"""Operator data: custom customer attributes, optional master data, product rules.

Created 2026-12-07 09:00.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from nextoffer.store.migrations.columns import (
    FLOAT,
    MONEY,
    STR16,
    STR64,
    STR200,
    TEXT,
    UTC_TIME,
    create_table,
    drop_tables,
    optional,
    primary_key,
    required,
)

revision = "0006"
down_revision = "0005"

# JSONB on PostgreSQL (equality for the bulk upsert's change test), JSON text on SQLite.
# Written out here rather than in columns.py: no other revision uses it.
ATTRIBUTES = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

PRODUCT_RULES = (
    ("requires_products", TEXT),
    ("requires_attribute", TEXT),
    ("exclusion_group", STR64),
    ("upgrades_from", TEXT),
)


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("products", schema=None) as batch_op:
        for name, type_ in PRODUCT_RULES:
            batch_op.add_column(optional(name, type_))
    # Real exports may lack a name or an ARPU: both become optional (age band and region
    # get the value "unknown" from ingest instead, so they stay NOT NULL).
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.alter_column("display_name", existing_type=STR200, nullable=True)
        batch_op.alter_column("arpu", existing_type=MONEY, nullable=True)
        batch_op.add_column(optional("attributes", ATTRIBUTES))
    with op.batch_alter_table("user_features", schema=None) as batch_op:
        batch_op.alter_column("arpu", existing_type=FLOAT, nullable=True)
    create_table(
        "customer_attribute_schema",
        required("name", STR64),
        required("kind", STR16),
        required("role", STR16),
        required("updated_at", UTC_TIME),
        primary_key("name"),
    )


def downgrade() -> None:
    """Revert this revision: names and ARPUs that are missing become the id and 0."""
    drop_tables("customer_attribute_schema")
    user_features = sa.table("user_features", sa.column("arpu", sa.Float))
    op.execute(user_features.update().where(user_features.c.arpu.is_(None)).values(arpu=0.0))
    with op.batch_alter_table("user_features", schema=None) as batch_op:
        batch_op.alter_column("arpu", existing_type=FLOAT, nullable=False)
    customers = sa.table(
        "customers",
        sa.column("customer_id", sa.String),
        sa.column("display_name", sa.String),
        sa.column("arpu", sa.Numeric),
    )
    op.execute(
        customers.update()
        .where(customers.c.display_name.is_(None))
        .values(display_name=customers.c.customer_id)
    )
    op.execute(customers.update().where(customers.c.arpu.is_(None)).values(arpu=0))
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_column("attributes")
        batch_op.alter_column("arpu", existing_type=MONEY, nullable=False)
        batch_op.alter_column("display_name", existing_type=STR200, nullable=False)
    with op.batch_alter_table("products", schema=None) as batch_op:
        for name, _ in reversed(PRODUCT_RULES):
            batch_op.drop_column(name)
