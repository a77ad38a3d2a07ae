"""Ingest end to end on SQLite and PostgreSQL: quarantine, typing, idempotence, formats."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from nextoffer.config import Settings
from nextoffer.ingest.sources import file_sha256
from nextoffer.jobs.calls import run_ingest
from nextoffer.pipelines.etl import IngestResult
from nextoffer.store.engine import make_engine
from nextoffer.store.migrate import upgrade
from nextoffer.store.schema import DATA_TABLES, JobRun, QuarantinedRow
from tests.helpers import (
    clear_database,
    csv_to_parquet,
    dump_all,
    dump_quarantine,
    dump_rows,
    dump_table,
    gzip_copy,
    header,
    quarantine_csv_rows,
    write_csv,
    write_world,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "bad_rows"
BAD_UTF8_LINE = b"C13,Caf\xe9 Owner,25-34,north,2020-01-01,prepaid,voucher,,10,,"

# (entity, line in its file, how the reason starts) for every bad row of the corpus.
EXPECTED_QUARANTINE = [
    ("products", 4, "negative_amount: price '-5'"),
    ("products", 5, "margin_exceeds_price:"),
    ("products", 6, "bad_enum: category 'gadget'"),
    ("products", 7, "bad_enum: contract_types 'prepaid|lifetime'"),
    ("products", 8, "bad_integer: min_tenure_months '2.5'"),
    ("products", 9, "out_of_range: min_tenure_months '-3'"),
    ("products", 10, "bad_boolean: is_retention_offer 'maybe'"),
    ("products", 11, "missing_id: product_id"),
    ("products", 12, "not_finite: price is NaN"),
    ("products", 13, "not_finite: price is infinite"),
    ("products", 14, "bad_type: price 'ten'"),
    ("products", 15, "duplicate: product_id 'MOB-A'"),
    ("products", 17, "malformed_row: expected 13 fields, found 4"),
    ("products", 19, "bad_id: product_id 'BAD ID'"),
    ("customers", 5, "missing_value: contract_type"),
    ("customers", 6, "bad_date: signup_date '2021-02-30'"),
    ("customers", 7, "future_date: signup_date '2999-01-01'"),
    ("customers", 8, "unknown_product: plan_id 'NOPE'"),
    ("customers", 9, "too_long: region"),
    ("customers", 10, "bad_id: customer_id 'C 9'"),
    ("customers", 11, "bad_type: data_gb_month 'lots'"),
    ("customers", 12, "malformed_row: expected 11 fields, found 12"),
    ("customers", 13, "out_of_range: voice_min_month '-1'"),
    ("customers", 14, "bad_encoding: invalid UTF-8 byte 0xe9"),
    ("subscriptions", 4, "end_before_start:"),
    ("subscriptions", 5, "unknown_customer: customer_id 'C4'"),
    ("subscriptions", 6, "unknown_product: product_id 'NEG-1'"),
    ("transactions", 5, "bad_timestamp: ts 'yesterday'"),
    ("transactions", 6, "future_timestamp: ts '2999-01-01T00:00:00Z'"),
    ("transactions", 7, "negative_amount: amount '-0.01'"),
    ("transactions", 8, "unknown_customer: customer_id 'C999'"),
    ("transactions", 9, "bad_enum: type 'refund'"),
    ("transactions", 10, "duplicate: transaction_id 'T1'"),
    ("transactions", 11, "not_finite: amount is infinite"),
    ("transactions", 12, "missing_value: ts"),
    ("events", 4, "unknown_product: product_id 'NOPE'"),
    ("events", 5, "bad_enum: channel 'fax'"),
    ("churn_labels", 4, "inconsistent_churn:"),
    ("churn_labels", 5, "duplicate: customer_id/as_of 'C1/2025-01-01'"),
    ("churn_labels", 6, "inconsistent_churn:"),
    ("churn_labels", 8, "missing_value: churned"),
]


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A migrated database on each backend."""
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def make_settings(database_url: str, var_dir: Path) -> Settings:
    return Settings(database_url=database_url, var_dir=var_dir)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """The hand-written bad-row corpus, plus one line that is not UTF-8 (line 14)."""
    folder = tmp_path / "corpus"
    shutil.copytree(FIXTURES, folder)
    with (folder / "customers.csv").open("ab") as handle:
        handle.write(BAD_UTF8_LINE + b"\n")
    return folder


def file_lines(path: Path) -> list[str]:
    """The lines of a file as text (undecodable bytes replaced), numbered from 1 at index 1."""
    return ["", *path.read_bytes().decode("utf-8", errors="replace").split("\n")]


def test_bad_rows_are_quarantined_with_reason_line_and_raw_text(
    engine: Engine, database_url: str, corpus: Path, tmp_path: Path
) -> None:
    settings = make_settings(database_url, tmp_path / "var")
    result = run_ingest(engine, settings, corpus)

    stored = dump_quarantine(engine)  # entity, source, sha256, line, reason, raw
    got = sorted((row[0], row[3]) for row in stored)
    assert got == sorted((entity, line) for entity, line, _ in EXPECTED_QUARANTINE)
    by_place = {(row[0], row[3]): row for row in stored}
    for entity, line, reason in EXPECTED_QUARANTINE:
        row = by_place[(entity, line)]
        source = corpus / f"{entity}.csv"
        assert row[4].startswith(reason), (entity, line, row[4])
        assert row[1] == str(source)
        assert row[2] == file_sha256(source)
        assert row[5] == file_lines(source)[line], (entity, line)

    # The quarantine CSV files hold exactly the same rows.
    files = {
        f"{e}.{e}.csv.{file_sha256(corpus / f'{e}.csv')[:12]}.csv": e
        for e in DATA_TABLES
        if (corpus / f"{e}.csv").exists()
    }
    from_files = quarantine_csv_rows(settings.quarantine_dir)
    assert {name for name, *_ in from_files} <= set(files)
    assert sorted((files[name], line, reason, raw) for name, line, reason, raw in from_files) == (
        sorted((row[0], row[3], row[4], row[5]) for row in stored)
    )

    counts = {f.entity: (f.rows_read, f.rows_loaded, f.rows_quarantined) for f in result.files}
    assert counts == {
        "products": (17, 3, 14),
        "customers": (13, 3, 10),
        "subscriptions": (6, 3, 3),
        "transactions": (11, 3, 8),
        "events": (4, 2, 2),
        "churn_labels": (7, 3, 4),
    }
    assert result.rows_quarantined == len(EXPECTED_QUARANTINE)
    with engine.connect() as conn:
        run = conn.execute(select(JobRun)).one()
    assert run.status == "succeeded"
    assert run.counts["rows_quarantined"] == len(EXPECTED_QUARANTINE)
    assert run.counts["rows_loaded"] == result.rows_loaded == 17


def test_good_rows_are_stored_with_their_types(
    engine: Engine, database_url: str, corpus: Path, tmp_path: Path
) -> None:
    run_ingest(engine, make_settings(database_url, tmp_path / "var"), corpus)

    products = dump_rows(engine, "products")
    assert set(products) == {"MOB-A", "ADD-B", "DEV-C"}
    assert products["MOB-A"] == {
        "product_id": "MOB-A",
        "name": "Mobile A",
        "category": "mobile_plan",
        "price": Decimal("20.00"),  # 19.999 rounded to cents
        "margin": Decimal("5.50"),
        "upfront_price": Decimal("0.00"),  # empty: the column's default
        "contract_types": "prepaid|one_year",
        "min_tenure_months": 12,
        "regions": "north|south",
        "channels": "web|app",
        "requires_category": None,
        "is_retention_offer": True,
        "active": True,  # empty: the column's default
        "requires_products": None,
        "requires_attribute": None,
        "exclusion_group": None,
        "upgrades_from": None,
        "offer_cost": Decimal("0.00"),  # absent column: the default
    }
    assert products["ADD-B"]["name"] == "Add-on, B"
    assert products["ADD-B"]["price"] == Decimal("9.99")
    assert products["ADD-B"]["upfront_price"] == Decimal("0.50")
    assert products["ADD-B"]["min_tenure_months"] == 0
    assert products["ADD-B"]["contract_types"] == ""
    assert products["ADD-B"]["requires_category"] == "mobile_plan"
    assert products["ADD-B"]["is_retention_offer"] is False
    assert products["ADD-B"]["active"] is False
    assert products["DEV-C"]["channels"] == "retail"

    customers = dump_rows(engine, "customers")
    assert set(customers) == {"C1", "C2", "C3"}
    assert customers["C1"] == {
        "customer_id": "C1",
        "display_name": "Smith, Jo",
        "age_band": "25-34",
        "region": "north",
        "signup_date": date(2020, 2, 29),
        "contract_type": "one_year",
        "payment_method": "direct_debit",
        "plan_id": "MOB-A",
        "arpu": Decimal("20.50"),
        "data_gb_month": 1.5,
        "voice_min_month": None,
        "attributes": None,  # no extra columns: no custom attributes
        "timezone": None,  # absent column: the region's zone applies (docs/consent.md)
    }
    assert customers["C2"]["plan_id"] is None
    assert customers["C2"]["arpu"] == Decimal("0.00")
    assert customers["C2"]["data_gb_month"] == 0.0
    assert customers["C2"]["voice_min_month"] == 120.0
    assert customers["C3"]["data_gb_month"] is None

    subscriptions = dump_rows(engine, "subscriptions")
    assert set(subscriptions) == {"S1", "S2", "S6"}
    assert subscriptions["S1"]["end_date"] is None
    assert subscriptions["S1"]["monthly_price"] == Decimal("19.99")
    assert subscriptions["S2"]["end_date"] == date(2999, 12, 31)  # a future end is allowed
    assert subscriptions["S6"]["monthly_price"] is None

    transactions = dump_rows(engine, "transactions")
    assert set(transactions) == {"T1", "T2", "T3"}
    assert transactions["T1"]["ts"] == datetime(2024, 3, 1, 8, 30, tzinfo=UTC)  # +02:00
    assert transactions["T1"]["amount"] == Decimal("20.00")
    assert transactions["T1"]["channel"] == "web"
    assert transactions["T2"]["ts"] == datetime(2024, 3, 1, 10, 30, tzinfo=UTC)  # no offset
    assert transactions["T2"]["channel"] is None
    assert transactions["T3"]["ts"] == datetime(2024, 3, 2, 4, 15, tzinfo=UTC)  # -05:00
    assert transactions["T3"]["amount"] == Decimal("499.00")

    events = dump_rows(engine, "events")
    assert set(events) == {"E1", "E2"}
    assert events["E1"]["product_id"] == "ADD-B"
    assert events["E2"]["ts"] == datetime(2024, 4, 1, 11, 0, 0, 123456, tzinfo=UTC)
    assert (events["E2"]["product_id"], events["E2"]["session_id"]) == (None, None)

    assert dump_table(engine, "churn_labels") == [
        ("C1", date(2025, 1, 1), True, date(2025, 2, 1)),
        ("C2", date(2025, 1, 1), False, None),
        ("C3", date(2025, 2, 1), True, None),
    ]


def test_second_run_of_the_same_folder_changes_nothing(
    engine: Engine, database_url: str, corpus: Path, tmp_path: Path
) -> None:
    world = write_world(tmp_path / "world", customers=30, bad_every=11)
    for name in ("products", "customers"):  # the corpus's bad rows too, under other names
        shutil.copy(corpus / f"{name}.csv", world.root / f"{name}-corpus.csv")
    settings = make_settings(database_url, tmp_path / "var")

    first = run_ingest(engine, settings, world.root)
    after_first = dump_all(engine)
    quarantine_files = quarantine_csv_rows(settings.quarantine_dir)
    second = run_ingest(engine, settings, world.root)

    assert first.rows_changed == first.rows_loaded > 0
    assert second.rows_changed == 0
    assert second.rows_loaded == first.rows_loaded
    assert second.rows_quarantined == first.rows_quarantined > 0
    assert first.rows_quarantined == sum(world.bad.values()) + 24
    assert dump_all(engine) == after_first
    assert quarantine_csv_rows(settings.quarantine_dir) == quarantine_files
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(QuarantinedRow)).scalar_one()
        runs = conn.execute(select(JobRun.status, JobRun.counts)).all()
    assert stored == first.rows_quarantined  # no duplicates from the second run
    assert [status for status, _ in runs] == ["succeeded", "succeeded"]
    assert sorted(counts["rows_changed"] for _, counts in runs) == [0, first.rows_changed]
    loaded = {name: len(after_first[name]) for name in DATA_TABLES}
    assert loaded == {
        name: world.rows.get(name, 0)
        - world.bad.get(name, 0)
        + {"products": 3, "customers": 3}.get(name, 0)
        for name in DATA_TABLES
    }


def test_a_changed_row_in_a_later_file_is_updated_not_duplicated(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    world = write_world(tmp_path / "world", customers=5)
    settings = make_settings(database_url, tmp_path / "var")
    run_ingest(engine, settings, world.root)
    before = dump_rows(engine, "customers")
    assert before["C000002"]["arpu"] != Decimal("99.99")

    # A later delivery holds only changed customers; products are already stored.
    later = tmp_path / "later"
    changed = [
        "C000002", "Renamed", "45-54", "east", "2021-01-03", "two_year", "voucher",
        "FIBRE-1G", "99.99", "", "", "",
    ]  # fmt: skip
    write_csv(later / "customers-2025-02.csv", header("customers"), [changed])
    result = run_ingest(engine, settings, later)
    assert (result.rows_loaded, result.rows_changed, result.rows_quarantined) == (1, 1, 0)

    after = dump_rows(engine, "customers")
    assert set(after) == set(before)
    assert after["C000002"]["display_name"] == "Renamed"
    assert after["C000002"]["arpu"] == Decimal("99.99")
    assert after["C000002"]["plan_id"] == "FIBRE-1G"
    assert after["C000002"]["data_gb_month"] is None
    assert {k: v for k, v in after.items() if k != "C000002"} == {
        k: v for k, v in before.items() if k != "C000002"
    }

    # Within one run, files of an entity load in name order: the later file wins.
    both = tmp_path / "both"
    write_csv(both / "customers-1.csv", header("customers"), [[*changed[:8], "10", "", "", ""]])
    write_csv(both / "customers-2.csv", header("customers"), [[*changed[:8], "20", "", "", ""]])
    result = run_ingest(engine, settings, both)
    assert result.rows_changed == 2
    assert dump_rows(engine, "customers")["C000002"]["arpu"] == Decimal("20.00")
    assert len(dump_rows(engine, "customers")) == len(before)


def test_parquet_and_gzip_load_the_same_as_csv(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    world = write_world(tmp_path / "world", customers=30, bad_every=7)
    for name in ("products", "customers", "transactions"):
        shutil.copy(FIXTURES / f"{name}.csv", world.root / f"{name}-corpus.csv")
    parquet = tmp_path / "parquet"
    gz = tmp_path / "gz"
    parquet.mkdir()
    gz.mkdir()
    for path in sorted(world.root.glob("*.csv")):
        csv_to_parquet(path, parquet / path.name.replace(".csv", ".parquet"), row_group_rows=40)
        gzip_copy(path, gz / f"{path.name}.gz")

    def load(folder: Path) -> tuple[dict[str, list[tuple[Any, ...]]], IngestResult]:
        clear_database(engine)
        result = run_ingest(engine, make_settings(database_url, tmp_path / folder.name), folder)
        return dump_all(engine), result

    as_csv, csv_result = load(world.root)
    as_parquet, parquet_result = load(parquet)
    as_gz, gz_result = load(gz)

    assert csv_result.rows_quarantined > 20
    for other, result in ((as_parquet, parquet_result), (as_gz, gz_result)):
        assert {n: other[n] for n in DATA_TABLES} == {n: as_csv[n] for n in DATA_TABLES}
        assert result.rows_loaded == csv_result.rows_loaded
    assert gz_result.rows_quarantined == csv_result.rows_quarantined
    # gzip: the same lines, reasons and raw text; only the file name and hash differ.
    assert [(q[0], q[3], q[4], q[5]) for q in as_gz["quarantine"]] == [
        (q[0], q[3], q[4], q[5]) for q in as_csv["quarantine"]
    ]

    # Parquet: the same reasons; rows are numbered from 1 (the CSV line minus the header).
    # Malformed CSV rows cannot exist in Parquet (the conversion dropped them).
    def reasons(rows: list[tuple[Any, ...]], line_offset: int) -> list[tuple[Any, ...]]:
        out = []
        for entity, source, _sha, line, reason, _raw in rows:
            stem = Path(source).name.split(".")[0]
            if reason.startswith("malformed_row"):
                continue
            # Corpus files have blank and malformed lines, so only the reasons compare there.
            out.append((entity, stem, reason, -1 if "corpus" in stem else line - line_offset))
        return sorted(out)

    assert reasons(as_parquet["quarantine"], 0) == reasons(as_csv["quarantine"], 1)
    malformed = sum(q[4].startswith("malformed_row") for q in as_csv["quarantine"])
    assert malformed == 2
    assert parquet_result.rows_quarantined == csv_result.rows_quarantined - malformed
    # Parquet raw text is the row as JSON.
    raw = next(q[5] for q in as_parquet["quarantine"] if "'C-NOBODY'" in q[4])
    assert json.loads(raw)["customer_id"] == "C-NOBODY"
