"""Ingest ledger: which source file (URI, hash, size) was loaded when, by which run.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "ingest_ledger",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("etag", sa.String(length=200), nullable=True),
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("loaded_at", UTC_TIME, nullable=False),
        sa.Column("rows_read", sa.BigInteger(), nullable=False),
        sa.Column("rows_loaded", sa.BigInteger(), nullable=False),
        sa.Column("rows_quarantined", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_ledger")),
        sa.UniqueConstraint("uri", "sha256", name="uq_ingest_ledger_uri_sha256"),
    )
    with op.batch_alter_table("ingest_ledger", schema=None) as batch_op:
        batch_op.create_index("ix_ingest_ledger_loaded_at", ["loaded_at"], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("ingest_ledger", schema=None) as batch_op:
        batch_op.drop_index("ix_ingest_ledger_loaded_at")
    op.drop_table("ingest_ledger")
