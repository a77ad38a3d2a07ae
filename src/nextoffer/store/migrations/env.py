"""Alembic environment: runs migrations on the engine handed over by nextoffer.store.migrate."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from nextoffer.store.schema import Base

engine = context.config.attributes.get("engine")
if not isinstance(engine, Engine):
    raise RuntimeError("run migrations through `nextoffer db`, which supplies the engine")

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things in place; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
