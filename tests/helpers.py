"""Test helpers: a small deterministic world of import files, and table dumps to compare."""

from __future__ import annotations

import csv
import gzip
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from sqlalchemy import Engine, UniqueConstraint, delete, inspect, select

from nextoffer.ingest.entities import BY_NAME
from nextoffer.store.schema import DATA_TABLES, Base, JobRun, QuarantinedRow

PRODUCT_ROWS = [
    # product_id, name, category, price, margin, upfront, contracts, tenure, regions,
    # channels, requires_category, retention, active
    ["MOB-S", "Mobile S", "mobile_plan", "15", "6", "", "", "", "", "", "", "", ""],
    [
        "MOB-L",
        "Mobile L",
        "mobile_plan",
        "35.5",
        "14.25",
        "0",
        "one_year|two_year",
        "6",
        "north|south",
        "web|app",
        "",
        "no",
        "yes",
    ],
    [
        "FIBRE-1G",
        "Fibre 1G",
        "broadband_plan",
        "49.99",
        "20",
        "29",
        "",
        "0",
        "",
        "",
        "",
        "false",
        "true",
    ],
    [
        "ADD-ROAM",
        "Roaming pack",
        "addon",
        "5",
        "4.5",
        "",
        "",
        "",
        "",
        "",
        "mobile_plan",
        "no",
        "true",
    ],
    [
        "DEV-PHONE",
        "Phone X",
        "device",
        "799",
        "120",
        "99",
        "",
        "0",
        "",
        "retail|web",
        "",
        "no",
        "true",
    ],
    ["BUNDLE-1", "Home bundle", "bundle", "69", "25", "", "", "12", "", "", "", "yes", "true"],
]
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
CONTRACTS = ("prepaid", "month_to_month", "one_year", "two_year")
PAYMENTS = ("direct_debit", "credit_card", "bank_transfer", "voucher")
REGIONS = ("north", "south", "east", "west")
CHANNELS = ("retail", "web", "app", "call_center", "telesales")
TX_TYPES = ("activation", "upgrade", "downgrade", "purchase", "cancellation")
EVENT_TYPES = (
    "web_visit",
    "app_login",
    "support_call",
    "network_complaint",
    "offer_impression",
    "offer_click",
    "offer_accept",
    "offer_decline",
)
OFFSETS = ("Z", "+02:00", "-05:30", "")


def header(entity: str) -> list[str]:
    """The full header of an entity's import file."""
    return BY_NAME[entity].column_names


def write_csv(path: Path, columns: list[str], rows: list[list[str]]) -> Path:
    """Write rows as a CSV file with LF line ends, quoting only where needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
    return path


@dataclass(frozen=True)
class World:
    """What `write_world` wrote: the folder, rows per entity, and which rows are bad."""

    root: Path
    rows: dict[str, int]
    bad: dict[str, int]


def write_world(
    root: Path,
    *,
    customers: int = 40,
    transactions_per_customer: int = 3,
    events_per_customer: int = 8,
    bad_every: int = 0,
) -> World:
    """Write a small, valid, deterministic world of import files under `root`.

    With `bad_every` > 0, every n-th transaction and event row is made invalid (an unknown
    enum value, an unknown customer, a negative amount...) so quarantine has content.
    """
    root.mkdir(parents=True, exist_ok=True)
    bad = {"transactions": 0, "events": 0}
    columns = header("products")  # rows leave the newer, optional rule columns empty
    write_csv(
        root / "products.csv", columns, [r + [""] * (len(columns) - len(r)) for r in PRODUCT_ROWS]
    )
    plans = [p[0] for p in PRODUCT_ROWS if p[2] in ("mobile_plan", "broadband_plan")]
    products = [p[0] for p in PRODUCT_ROWS]
    start = date(2021, 1, 1)
    customer_rows: list[list[str]] = []
    subscription_rows: list[list[str]] = []
    transaction_rows: list[list[str]] = []
    event_rows: list[list[str]] = []
    label_rows: list[list[str]] = []
    for i in range(customers):
        cid = f"C{i:06d}"
        signup = start + timedelta(days=i % 700)
        customer_rows.append(
            [
                cid,
                f"Customer {i}" if i % 5 else f'Smith, "Jo" {i}',
                AGE_BANDS[i % len(AGE_BANDS)],
                REGIONS[i % len(REGIONS)],
                signup.isoformat(),
                CONTRACTS[i % len(CONTRACTS)],
                PAYMENTS[i % len(PAYMENTS)],
                plans[i % len(plans)] if i % 7 else "",
                f"{10 + i % 60}.{(i * 37) % 1000:03d}",
                f"{(i % 40) / 4:g}" if i % 3 else "",
                str(i % 500),
            ]
        )
        subscription_rows.append(
            [
                f"S{i:06d}",
                cid,
                plans[i % len(plans)],
                signup.isoformat(),
                (signup + timedelta(days=400)).isoformat() if i % 4 == 0 else "",
                f"{15 + i % 30}.5",
            ]
        )
        for j in range(transactions_per_customer):
            n = len(transaction_rows)
            ts = datetime(2024, 1, 1, 8) + timedelta(hours=n * 5, minutes=n % 60)
            row = [
                f"T{i:06d}-{j}",
                cid,
                products[(i + j) % len(products)],
                ts.isoformat() + OFFSETS[n % len(OFFSETS)],
                TX_TYPES[n % len(TX_TYPES)],
                f"{(n % 90) + 0.5:.2f}",
                CHANNELS[n % len(CHANNELS)] if n % 6 else "",
            ]
            if bad_every and n % bad_every == bad_every - 1:
                row[5] = "-1"
                bad["transactions"] += 1
            transaction_rows.append(row)
        for j in range(events_per_customer):
            n = len(event_rows)
            ts = datetime(2024, 6, 1) + timedelta(minutes=n * 7, seconds=n % 60)
            event_type = EVENT_TYPES[n % len(EVENT_TYPES)]
            row = [
                f"E{i:06d}-{j:03d}",
                cid,
                ts.isoformat() + OFFSETS[n % len(OFFSETS)],
                event_type,
                products[n % len(products)] if event_type.startswith("offer") else "",
                CHANNELS[n % len(CHANNELS)] if n % 3 else "",
                f"sess-{i}-{j // 3}",
            ]
            if bad_every and n % bad_every == bad_every - 1:
                if (n // bad_every) % 2:
                    row[3] = "teleport"
                else:
                    row[1] = "C-NOBODY"
                bad["events"] += 1
            event_rows.append(row)
        churned = i % 9 == 0
        label_rows.append(
            [
                cid,
                "2025-01-01",
                "true" if churned else "false",
                (date(2025, 1, 1) + timedelta(days=i % 80)).isoformat() if churned else "",
            ]
        )
    columns = header("customers")  # rows leave the newer, optional columns empty (timezone)
    write_csv(
        root / "customers.csv", columns, [r + [""] * (len(columns) - len(r)) for r in customer_rows]
    )
    write_csv(root / "subscriptions.csv", header("subscriptions"), subscription_rows)
    write_csv(root / "transactions.csv", header("transactions"), transaction_rows)
    write_csv(root / "events.csv", header("events"), event_rows)
    write_csv(root / "churn_labels.csv", header("churn_labels"), label_rows)
    rows = {
        "products": len(PRODUCT_ROWS),
        "customers": len(customer_rows),
        "subscriptions": len(subscription_rows),
        "transactions": len(transaction_rows),
        "events": len(event_rows),
        "churn_labels": len(label_rows),
    }
    return World(root, rows, bad)


def csv_to_parquet(source: Path, target: Path, *, row_group_rows: int = 1000) -> Path:
    """The same rows as a Parquet file whose every column is text (malformed rows dropped)."""
    with source.open(newline="", encoding="utf-8") as handle:
        names = next(csv.reader(handle))
    table = pa_csv.read_csv(
        source,
        parse_options=pa_csv.ParseOptions(invalid_row_handler=lambda _row: "skip"),
        convert_options=pa_csv.ConvertOptions(
            column_types={n: pa.string() for n in names},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )
    pq.write_table(table, target, row_group_size=row_group_rows)
    return target


def gzip_copy(source: Path, target: Path) -> Path:
    """A gzip-compressed copy of `source`."""
    with source.open("rb") as raw, gzip.open(target, "wb") as packed:
        shutil.copyfileobj(raw, packed)
    return target


def _plain(value: Any) -> Any:
    """A value in one comparable form, whatever the backend returned."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, Decimal):
        return value.quantize(Decimal("0.01"))
    return value


def dump_table(
    engine: Engine, name: str, *, exclude: tuple[str, ...] = ()
) -> list[tuple[Any, ...]]:
    """Every row of a table as plain tuples (columns in table order), sorted."""
    table = Base.metadata.tables[name]
    columns = [c for c in table.columns if c.name not in exclude]
    with engine.connect() as conn:
        rows = conn.execute(select(*columns)).all()
    return sorted((tuple(_plain(v) for v in row) for row in rows), key=repr)


def dump_rows(engine: Engine, name: str) -> dict[str, dict[str, Any]]:
    """Rows of a one-column-key data table by id, as column -> plain value."""
    table = Base.metadata.tables[name]
    (key,) = table.primary_key.columns
    with engine.connect() as conn:
        rows = conn.execute(select(table)).mappings().all()
    return {row[key.name]: {k: _plain(v) for k, v in row.items()} for row in rows}


QUARANTINE_VOLATILE = ("id", "run_id", "quarantined_at")


def dump_quarantine(engine: Engine) -> list[tuple[Any, ...]]:
    """The quarantine table without its per-run columns: entity, source, sha, line, reason, raw."""
    return dump_table(engine, "quarantine", exclude=QUARANTINE_VOLATILE)


def dump_all(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every data table and the quarantine table, for comparing two databases."""
    dumped = {name: dump_table(engine, name) for name in DATA_TABLES}
    dumped["quarantine"] = dump_quarantine(engine)
    return dumped


def quarantine_csv_rows(quarantine_dir: Path) -> list[tuple[str, int, str, str]]:
    """(file name, line, reason, raw) of every row of every quarantine CSV, sorted."""
    out: list[tuple[str, int, str, str]] = []
    for path in sorted(quarantine_dir.glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            assert next(reader) == ["line", "reason", "raw"], path
            out.extend((path.name, int(line), reason, raw) for line, reason, raw in reader)
    return sorted(out)


def clear_database(engine: Engine) -> None:
    """Delete every loaded row, quarantined row and run record (children first)."""
    with engine.begin() as conn:
        for name in reversed(DATA_TABLES):
            conn.execute(delete(Base.metadata.tables[name]))
        conn.execute(delete(QuarantinedRow))
        conn.execute(delete(JobRun))


BOOKKEEPING = {"alembic_version"}


def schema_snapshot(engine: Engine) -> dict[str, dict[str, Any]]:
    """Tables with their columns, key, indexes, unique constraints and foreign keys."""
    inspector = inspect(engine)
    snapshot: dict[str, dict[str, Any]] = {}
    for name in sorted(set(inspector.get_table_names()) - BOOKKEEPING):
        snapshot[name] = {
            "columns": [(c["name"], c["nullable"]) for c in inspector.get_columns(name)],
            "primary_key": inspector.get_pk_constraint(name)["constrained_columns"],
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in inspector.get_indexes(name)
                # PostgreSQL also lists the index behind each unique constraint.
                if not i.get("duplicates_constraint")
            ),
            "unique": sorted(
                (u["name"], tuple(u["column_names"]))
                for u in inspector.get_unique_constraints(name)
            ),
            "foreign_keys": sorted(
                (tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]))
                for f in inspector.get_foreign_keys(name)
            ),
        }
    return snapshot


def model_snapshot() -> dict[str, dict[str, Any]]:
    """The same picture, from the SQLAlchemy models."""
    snapshot: dict[str, dict[str, Any]] = {}
    for name, table in sorted(Base.metadata.tables.items()):
        snapshot[name] = {
            "columns": [(c.name, c.nullable) for c in table.columns],
            "primary_key": [c.name for c in table.primary_key.columns],
            "indexes": sorted(
                (str(i.name), tuple(c.name for c in i.columns), bool(i.unique))
                for i in table.indexes
            ),
            "unique": sorted(
                (str(u.name), tuple(c.name for c in u.columns))
                for u in table.constraints
                if isinstance(u, UniqueConstraint)
            ),
            "foreign_keys": sorted(
                (
                    tuple(c.name for c in f.columns),
                    f.referred_table.name,
                    tuple(e.column.name for e in f.elements),
                )
                for f in table.foreign_key_constraints
            ),
        }
    return snapshot


def wait_until(
    check: Callable[[], bool], timeout_s: float, what: str, *, every_s: float = 0.2
) -> None:
    """Poll `check` every `every_s` seconds; fail naming `what` when `timeout_s` passes first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
