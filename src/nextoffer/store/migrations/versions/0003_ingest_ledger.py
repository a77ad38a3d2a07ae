"""Ingest ledger: which source file (URI, hash, size) was loaded when, by which run.

Created 2026-11-30 10:00.
"""

from __future__ import annotations

from alembic import op

from nextoffer.store.migrations.columns import (
    BIGINT,
    STR32,
    STR36,
    STR64,
    STR200,
    TEXT,
    UTC_TIME,
    create_indexes,
    create_table,
    optional,
    primary_key,
    required,
    serial_id,
    unique,
)

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    """Apply this revision."""
    create_table(
        "ingest_ledger",
        serial_id(),
        required("uri", TEXT),
        required("sha256", STR64),
        required("size", BIGINT),
        optional("etag", STR200),
        required("entity", STR32),
        required("run_id", STR36),
        required("loaded_at", UTC_TIME),
        required("rows_read", BIGINT),
        required("rows_loaded", BIGINT),
        required("rows_quarantined", BIGINT),
        primary_key("id"),
        unique("uq_ingest_ledger_uri_sha256", "uri", "sha256"),
    )
    create_indexes("ingest_ledger", ("ix_ingest_ledger_loaded_at", ["loaded_at"]))


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("ingest_ledger")
