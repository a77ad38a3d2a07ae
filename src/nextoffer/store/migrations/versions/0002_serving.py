"""Serving: users, API keys, experiments, precomputed offers, experiment columns on events.

Created 2026-11-23 14:00.
"""

from __future__ import annotations

from alembic import op

from nextoffer.store.migrations.columns import (
    BOOL,
    JSON,
    STR16,
    STR32,
    STR36,
    STR64,
    STR100,
    STR200,
    UTC_TIME,
    create_indexes,
    create_table,
    drop_tables,
    optional,
    primary_key,
    required,
    unique,
)

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    """Apply this revision."""
    create_table(
        "users",
        required("user_id", STR36),
        required("username", STR64),
        required("password_hash", STR200),
        required("role", STR16),
        required("disabled", BOOL),
        required("created_at", UTC_TIME),
        primary_key("user_id"),
        unique(op.f("uq_users_username"), "username"),
    )
    create_table(
        "api_keys",
        required("key_id", STR32),
        required("name", STR100),
        required("role", STR16),
        required("key_hash", STR64),
        required("created_at", UTC_TIME),
        optional("revoked_at", UTC_TIME),
        primary_key("key_id"),
    )
    create_table(
        "experiments",
        required("experiment_id", STR36),
        required("name", STR200),
        required("unit", STR16),
        required("variants", JSON),
        required("status", STR16),
        required("created_at", UTC_TIME),
        optional("stopped_at", UTC_TIME),
        optional("created_by", STR100),
        primary_key("experiment_id"),
    )
    create_indexes("experiments", (op.f("ix_experiments_status"), ["status"]))
    create_table(
        "precomputed_offers",
        required("customer_id", STR64),
        required("offers", JSON),
        required("model_version", STR64),
        required("computed_at", UTC_TIME),
        primary_key("customer_id"),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(optional("experiment_id", STR36))
        batch_op.add_column(optional("variant", STR64))
        batch_op.create_index(
            "ix_events_experiment_variant",
            ["experiment_id", "variant", "event_type"],
            unique=False,
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_experiment_variant")
        batch_op.drop_column("variant")
        batch_op.drop_column("experiment_id")
    drop_tables("precomputed_offers", "experiments", "api_keys", "users")
