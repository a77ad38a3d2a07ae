"""Alembic environment: runs migrations on the engine handed over by nextoffer.store.migrate."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, Engine

from nextoffer.store.schema import Base

engine = context.config.attributes.get("engine")
if not isinstance(engine, Engine):
    raise RuntimeError("run migrations through `nextoffer db`, which supplies the engine")


def _migrate(connection: Connection) -> None:
    with connection.begin():
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            # SQLite cannot ALTER most things in place; batch mode copies the table instead.
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        if connection.dialect.name == "sqlite":
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:  # raising here rolls the whole upgrade back
                raise RuntimeError(f"migration left rows without their parent: {broken[:5]}")


with engine.connect() as connection:
    if connection.dialect.name != "sqlite":
        _migrate(connection)
    else:
        # Copying a table that others reference (batch mode) means dropping it, which
        # SQLite refuses while foreign keys are on; they can only be switched outside a
        # transaction, so off here, checked after the migrations, on again at the end.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
        try:
            _migrate(connection)
        finally:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()
