"""Privacy: the erasure ledger, keyed digests of the customers who were erased.

Created 2026-12-06 14:00.
"""

from __future__ import annotations

from nextoffer.store.migrations.columns import (
    STR64,
    UTC_TIME,
    create_table,
    drop_tables,
    primary_key,
    required,
)

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    """Apply this revision."""
    # Only an HMAC of the id: the ledger must outlive the customer without naming them.
    create_table(
        "erasure_ledger",
        required("digest", STR64),
        required("erased_at", UTC_TIME),
        primary_key("digest"),
    )


def downgrade() -> None:
    """Revert this revision."""
    drop_tables("erasure_ledger")
