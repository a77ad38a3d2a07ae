"""Serving champions: each model kind's champion as serving reads it, without MLflow.

Created 2026-12-06 17:10.
"""

from __future__ import annotations

from nextoffer.store.migrations.columns import (
    INT,
    JSON,
    STR16,
    TEXT,
    UTC_TIME,
    create_table,
    drop_tables,
    primary_key,
    required,
)

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    """Apply this revision."""
    create_table(
        "serving_champions",
        required("kind", STR16),
        required("version", INT),
        required("files_url", TEXT),
        required("metrics", JSON),
        required("promoted_at", UTC_TIME),
        primary_key("kind"),
    )


def downgrade() -> None:
    """Revert this revision."""
    drop_tables("serving_champions")
