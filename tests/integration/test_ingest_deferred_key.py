"""A first load into an empty table builds its keys after the rows; a dropped key comes back."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from nextoffer.config import Settings
from nextoffer.pipelines.etl import run_ingest
from nextoffer.store.engine import make_engine
from nextoffer.store.migrate import upgrade
from tests.helpers import model_snapshot, schema_snapshot, write_world


def amounts(engine: Engine) -> dict[str, float]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT transaction_id, amount FROM transactions"))
        return {str(r[0]): float(r[1]) for r in rows}


def test_first_load_ends_with_every_key_and_index(database_url: str, tmp_path: Path) -> None:
    world = write_world(tmp_path / "world", customers=60, bad_every=17)
    engine = make_engine(database_url)
    upgrade(engine)
    settings = Settings(database_url=database_url, var_dir=tmp_path / "var")

    first = run_ingest(engine, settings, world.root)

    good = world.rows["transactions"] - world.bad["transactions"]
    assert len(amounts(engine)) == good
    assert first.rows_quarantined == sum(world.bad.values()) > 0
    # PostgreSQL built the primary keys and indexes it dropped for the load; names too.
    assert schema_snapshot(engine) == model_snapshot()
    assert run_ingest(engine, settings, world.root).rows_changed == 0
    engine.dispose()


@pytest.mark.integration
def test_a_key_left_dropped_by_a_dead_load_is_built_before_merging(
    postgres_url: str, tmp_path: Path
) -> None:
    world = write_world(tmp_path / "world", customers=60)
    engine = make_engine(postgres_url)
    upgrade(engine)
    settings = Settings(database_url=postgres_url, var_dir=tmp_path / "var")
    run_ingest(engine, settings, world.root)
    # What a load killed between its first block and its last leaves behind.
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE transactions DROP CONSTRAINT pk_transactions"))
    path = world.root / "transactions.csv"
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    header, first = rows[0], rows[1]
    first[header.index("amount")] = "123.45"
    later = tmp_path / "later"
    later.mkdir()
    with (later / "transactions.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([header, first])

    again = run_ingest(engine, settings, later)

    assert again.rows_changed == 1  # merged on the key: updated, not added
    assert amounts(engine)[first[header.index("transaction_id")]] == 123.45
    assert len(amounts(engine)) == world.rows["transactions"]
    assert schema_snapshot(engine) == model_snapshot()
    engine.dispose()
