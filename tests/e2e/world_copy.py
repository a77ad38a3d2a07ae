"""A built world's database copied into a fresh PostgreSQL database, table by table.

Building a world (quickstart: load, features, training, precompute) takes tens of seconds;
copying the rows of one already built on SQLite takes a few, and the copy shares the world's
registry and model files. Migrations create the target's schema, so it is PostgreSQL's own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, Integer, func, insert, select, text

from nextoffer.store.engine import make_engine
from nextoffer.store.migrate import upgrade
from nextoffer.store.schema import Base
from tests.conftest import PG_HOST, PG_PORT

CHUNK = 5000


def copy_rows(source: Engine, target: Engine) -> dict[str, int]:
    """Every row of every table of `source` into the migrated, empty `target`; rows per table.

    Serial ids are moved past the copied ones, so the app's own inserts do not collide.
    """
    copied: dict[str, int] = {}
    with source.connect() as reading, target.begin() as writing:
        for table in Base.metadata.sorted_tables:
            rows = [dict(r) for r in reading.execute(select(table)).mappings()]
            for start in range(0, len(rows), CHUNK):
                writing.execute(insert(table), rows[start : start + CHUNK])
            copied[table.name] = len(rows)
            for column in table.primary_key.columns:
                if isinstance(column.type, Integer) and column.autoincrement in (True, "auto"):
                    top = writing.execute(select(func.max(column))).scalar()
                    if top is not None:
                        writing.execute(
                            text("SELECT setval(pg_get_serial_sequence(:t, :c), :v)"),
                            {"t": table.name, "c": column.name, "v": int(top)},
                        )
    return copied


@contextmanager
def postgres_copy(source_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database holding a copy of `source_url`'s rows; dropped afterwards."""
    import psycopg

    name = f"nextoffer_copy_{uuid.uuid4().hex[:12]}"
    admin = f"host={PG_HOST} port={PG_PORT} user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    source, target = make_engine(source_url), make_engine(url)
    try:
        upgrade(target)
        copy_rows(source, target)
        source.dispose()
        target.dispose()
        yield url
    finally:
        source.dispose()
        target.dispose()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
