"""Registering custom customer attributes in `customer_attribute_schema`."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite

from nextoffer.domain.attributes import AttributeSpec
from nextoffer.store.runs import utcnow
from nextoffer.store.schema import CustomerAttributeSchema


def register_attributes(
    engine: Engine, specs: Sequence[AttributeSpec], *, replace: bool = False
) -> None:
    """Record attributes' kind and role.

    `replace=False` (inferred from a file) adds only attributes not registered yet, so a
    registered attribute keeps its kind; `replace=True` (declared in a mapping) overwrites.
    """
    if not specs:
        return
    rows = [
        {"name": s.name, "kind": s.kind.value, "role": s.role.value, "updated_at": utcnow()}
        for s in specs
    ]
    with engine.begin() as conn:
        dialect = conn.dialect.name
        insert: postgresql.Insert | sqlite.Insert
        if dialect == "postgresql":
            insert = postgresql.insert(CustomerAttributeSchema)
        elif dialect == "sqlite":
            insert = sqlite.insert(CustomerAttributeSchema)
        else:
            raise NotImplementedError(f"attribute schema: unsupported database {dialect!r}")
        if replace:
            statement = insert.on_conflict_do_update(
                index_elements=["name"],
                set_={
                    "kind": insert.excluded.kind,
                    "role": insert.excluded.role,
                    "updated_at": insert.excluded.updated_at,
                },
            )
        else:
            statement = insert.on_conflict_do_nothing(index_elements=["name"])
        conn.execute(statement, rows)
