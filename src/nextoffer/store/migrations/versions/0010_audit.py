"""Audit trail: the append-only `audit` table, its triggers refusing UPDATE and DELETE.

Created 2026-12-06 14:00.
"""

from __future__ import annotations

from alembic import op

from nextoffer.store.migrations.columns import (
    JSON,
    STR16,
    STR32,
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
)

revision = "0010"
down_revision = "0009"

# Written out here, not shared: an applied migration's SQL must never change.
PG_FUNCTION = """
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit table is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""
PG_TRIGGER = """
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit
FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()
"""
SQLITE_TRIGGERS = (
    """
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit table is append-only: UPDATE refused'); END
    """,
    """
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit table is append-only: DELETE refused'); END
    """,
)


def upgrade() -> None:
    """Apply this revision."""
    create_table(
        "audit",
        required("id", STR32),
        required("at", UTC_TIME),
        required("actor_kind", STR16),
        required("actor_id", STR100),
        required("action", STR32),
        optional("target", STR200),
        optional("customer_digest", STR64),
        optional("address", STR64),
        optional("request_id", STR64),
        required("detail", JSON),
        primary_key("id"),
    )
    create_indexes(
        "audit",
        ("ix_audit_at", ["at"]),
        ("ix_audit_customer_at", ["customer_digest", "at"]),
        ("ix_audit_actor_at", ["actor_id", "at"]),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute(PG_TRIGGER)
    elif dialect == "sqlite":
        for trigger in SQLITE_TRIGGERS:
            op.execute(trigger)


def downgrade() -> None:
    """Revert this revision (dropping the table drops its triggers)."""
    drop_tables("audit")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_append_only()")
