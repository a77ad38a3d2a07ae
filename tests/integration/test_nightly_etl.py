"""The nightly ETL and its ledger on SQLite and PostgreSQL: only new or changed files load."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from nextoffer.config import Settings
from nextoffer.domain.errors import ConfigError, InputError
from nextoffer.ingest.sources import file_sha256
from nextoffer.jobs.calls import run_nightly_etl
from nextoffer.jobs.context import JobContext
from nextoffer.jobs.runner import run_exclusive as run_job
from nextoffer.pipelines import nightly
from nextoffer.pipelines.etl import Staged
from nextoffer.store.engine import make_engine
from nextoffer.store.ledger import list_entries
from nextoffer.store.migrate import upgrade
from nextoffer.store.schema import DATA_TABLES, JobRun, QuarantinedRow
from tests.helpers import dump_all, dump_rows, header, write_csv, write_world

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "bad_rows"


class NoChampionRegistry:
    """A registry with no models yet: the nightly ETL then skips precompute (no MLflow here)."""

    def champion(self, kind: str) -> None:
        return None


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def settings_for(database_url: str, tmp_path: Path, source: Path | str) -> Settings:
    return Settings(database_url=database_url, var_dir=tmp_path / "var", ingest_source=str(source))


def nightly_run(engine: Engine, settings: Settings) -> nightly.NightlyResult:
    return run_nightly_etl(engine, settings, registry=NoChampionRegistry())  # type: ignore[arg-type]


def runs(engine: Engine, job: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(JobRun.status, JobRun.counts)
            .where(JobRun.job == job)
            .order_by(JobRun.started_at)
        ).all()
    return [{"status": status, **counts} for status, counts in rows]


def test_second_run_loads_nothing_new(engine: Engine, database_url: str, tmp_path: Path) -> None:
    world = write_world(tmp_path / "incoming", customers=30, bad_every=11)
    settings = settings_for(database_url, tmp_path, world.root)

    first = nightly_run(engine, settings)
    after_first = dump_all(engine)
    second = nightly_run(engine, settings)

    assert first.files_loaded == 6 and first.skipped == 0
    assert first.counts()["rows_loaded"] == sum(world.rows.values()) - sum(world.bad.values())
    assert first.counts()["customers_featured"] == 30
    assert first.precompute is None  # no champion yet
    assert "no offers champion yet" in first.summary()
    assert (second.files_loaded, second.skipped) == (0, 6)
    assert second.features is None
    assert second.summary().startswith(f"etl: nothing new in {world.root} (6 files already loaded)")
    assert dump_all(engine) == after_first

    # The ledger: one row per file, keyed by absolute path and content hash, with counts.
    assert first.ingest is not None
    ledger = {e.uri: e for e in list_entries(engine)}
    files = {str((world.root / f"{name}.csv").resolve()): name for name in world.rows}
    assert set(ledger) == set(files)
    for uri, entry in ledger.items():
        assert entry.entity == files[uri]
        assert entry.sha256 == file_sha256(Path(uri))
        assert entry.size == Path(uri).stat().st_size
        assert entry.rows_read == world.rows[entry.entity]
        assert entry.rows_quarantined == world.bad.get(entry.entity, 0)
        assert entry.run_id == first.ingest.run_id
        assert entry.loaded_at is not None and entry.loaded_at.tzinfo is not None

    # Every night leaves a trace; the quiet one loads nothing and recomputes nothing.
    etl = runs(engine, "etl")
    assert [r["status"] for r in etl] == ["succeeded", "succeeded"]
    assert [(r["files_loaded"], r["files_skipped"]) for r in etl] == [(6, 0), (0, 6)]
    # One record per job (issue 14): the etl run, no `ingest` or `features` run inside it.
    assert runs(engine, "ingest") == runs(engine, "features") == []


def test_a_changed_file_is_loaded_again_and_a_new_file_is_picked_up(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    world = write_world(tmp_path / "incoming", customers=10)
    settings = settings_for(database_url, tmp_path, world.root)
    nightly_run(engine, settings)
    customers = world.root / "customers.csv"
    old_sha = file_sha256(customers)
    assert dump_rows(engine, "customers")["C000003"]["arpu"] != Decimal("77.70")

    # The supplier rewrites customers.csv with one customer's ARPU changed.
    lines = customers.read_text(encoding="utf-8").splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("C000003,"))
    fields = lines[index].split(",")
    fields[8] = "77.70"
    lines[index] = ",".join(fields)
    customers.write_text("\n".join(lines) + "\n", encoding="utf-8")

    changed = nightly_run(engine, settings)
    assert changed.files_loaded == 1 and changed.skipped == 5
    assert changed.ingest is not None
    assert [f.entity for f in changed.ingest.files] == ["customers"]
    assert changed.counts()["rows_changed"] == 1  # upserts: only the changed row is written
    assert dump_rows(engine, "customers")["C000003"]["arpu"] == Decimal("77.70")
    hashes = {e.sha256 for e in list_entries(engine) if e.uri == str(customers.resolve())}
    assert hashes == {old_sha, file_sha256(customers)}

    # A new delivery lands next to the old files: only it is loaded.
    later = write_csv(
        world.root / "transactions-2026-12.csv",
        header("transactions"),
        [["T-NEW-1", "C000001", "MOB-L", "2024-12-01T10:00:00Z", "purchase", "35.50", "web"]],
    )
    picked = nightly_run(engine, settings)
    assert picked.ingest is not None
    assert [Path(f.source).name for f in picked.ingest.files] == [later.name]
    assert picked.counts()["rows_loaded"] == 1
    assert picked.skipped == 6
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(QuarantinedRow)).scalar_one() == 0
    assert str(later.resolve()) in {e.uri for e in list_entries(engine)}


def test_bad_rows_are_quarantined_as_usual_and_only_once(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    source = tmp_path / "incoming"
    shutil.copytree(FIXTURES, source)
    settings = settings_for(database_url, tmp_path, source)

    first = nightly_run(engine, settings)
    again = nightly_run(engine, settings)

    with engine.connect() as conn:
        stored = dict(
            conn.execute(
                select(QuarantinedRow.entity, func.count()).group_by(QuarantinedRow.entity)
            ).all()
        )
    ledger = {e.entity: e for e in list_entries(engine)}
    # The corpus's bad rows per file (test_ingest.py names each one), kept in the ledger too.
    expected = {
        "products": 14,
        "customers": 9,
        "subscriptions": 3,
        "transactions": 8,
        "events": 2,
        "churn_labels": 4,
    }
    assert stored == expected
    assert {name: e.rows_quarantined for name, e in ledger.items()} == expected
    assert first.counts()["rows_quarantined"] == sum(expected.values())
    quarantine_files = sorted(p.name for p in settings.quarantine_dir.glob("*.csv"))
    assert len(quarantine_files) == 6
    assert again.files_loaded == 0 and again.skipped == 6


def test_steps_hand_over_through_json_like_airflow_tasks(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    world = write_world(tmp_path / "incoming", customers=8)
    settings = settings_for(database_url, tmp_path, world.root)

    staged = nightly.extract(engine, settings)
    handed = Staged.from_dict(json.loads(json.dumps(staged.to_dict())))
    assert handed == staged
    # Dependency order (the world has no exposures file).
    assert [f.entity for f in handed.files] == [n for n in DATA_TABLES if n in world.rows]
    loaded = nightly.load(engine, settings, handed)
    assert loaded.rows_loaded == sum(world.rows.values())
    assert nightly.recalculate_features(engine, settings).customers == 8
    assert nightly.extract(engine, settings).files == []


def test_empty_missing_and_unset_sources(engine: Engine, database_url: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.txt").write_text("not an import file", encoding="utf-8")
    result = nightly_run(engine, settings_for(database_url, tmp_path, empty))
    assert (result.files_loaded, result.skipped) == (0, 0)
    assert runs(engine, "etl")[0]["files_loaded"] == 0

    with pytest.raises(InputError, match="no such file or folder"):
        nightly_run(engine, settings_for(database_url, tmp_path, tmp_path / "missing"))
    with pytest.raises(ConfigError, match="NEXTOFFER_INGEST_SOURCE is empty"):
        nightly_run(engine, settings_for(database_url, tmp_path, ""))


def test_etl_job_without_a_path_reads_the_ingest_source(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    world = write_world(tmp_path / "incoming", customers=12)
    settings = settings_for(database_url, tmp_path, world.root)
    context = JobContext(engine, settings, NoChampionRegistry())  # type: ignore[arg-type]

    counts = run_job(context, "etl", {})
    again = run_job(context, "etl", {})

    assert counts["files_loaded"] == 6
    assert counts["customers_featured"] == 12
    assert counts["customers_precomputed"] == 0  # beat's chain runs precompute as its own job
    assert (again["files_loaded"], again["files_skipped"]) == (0, 6)
    assert [r["status"] for r in runs(engine, "etl")] == ["succeeded", "succeeded"]
    assert runs(engine, "precompute") == []
