"""Hostile import files on SQLite and PostgreSQL: bad rows quarantined with a reason, the rest load.

One import per database holds every kind of bad row (the table `KINDS`), so the suite stays
fast; the oversized cases (a 50 MB line, a gzip bomb, an unclosed quote before a megabyte of
good rows) are one more import per database, under a memory bound.
"""

from __future__ import annotations

import csv
import gzip
import math
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine, select

from nextoffer.config import Settings
from nextoffer.domain.limits import MAX_LINE_BYTES
from nextoffer.domain.spreadsheet import safe_cell
from nextoffer.jobs.calls import run_ingest
from nextoffer.pipelines.features import run_features
from nextoffer.store.engine import make_engine
from nextoffer.store.migrate import upgrade
from nextoffer.store.schema import JobRun, UserFeatures
from tests.helpers import dump_quarantine, dump_rows

HEADERS = {
    "products": "product_id,name,category,price,margin,min_tenure_months",
    "customers": (
        "customer_id,display_name,age_band,region,signup_date,contract_type,payment_method,"
        "plan_id,arpu,data_gb_month,voice_min_month,tier"
    ),
    "subscriptions": "subscription_id,customer_id,product_id,start_date,end_date,monthly_price",
    "transactions": "transaction_id,customer_id,product_id,ts,type,amount,channel",
    "events": "event_id,customer_id,ts,event_type,product_id,channel,session_id",
}
TEMPLATES = {
    "products": ["MOB", "Mobile", "mobile_plan", "30", "12", "0"],
    "customers": [
        "G1",
        "Ann Lee",
        "25-34",
        "north",
        "2020-01-01",
        "prepaid",
        "voucher",
        "MOB",
        "10",
        "1.5",
        "100",
        "gold",
    ],
    "subscriptions": ["S1", "G1", "MOB", "2020-01-01", "", "30"],
    "transactions": ["T1", "G1", "MOB", "2024-01-01T09:00:00Z", "activation", "30", "web"],
    "events": ["E1", "G1", "2024-02-01T08:00:00Z", "web_visit", "", "web", "s1"],
}


def row(entity: str, **changes: str | bytes) -> bytes:
    """One CSV line of `entity`: its template with some columns changed (as written, raw)."""
    names = HEADERS[entity].split(",")
    cells: list[bytes] = [v.encode() for v in TEMPLATES[entity]]
    for name, value in changes.items():
        cells[names.index(name)] = value if isinstance(value, bytes) else value.encode()
    return b",".join(cells) + b"\n"


def customer(cid: str, **changes: str | bytes) -> bytes:
    return row("customers", customer_id=cid, **changes)


@dataclass(frozen=True)
class Bad:
    """A kind of bad row: its file, its bytes (one or more lines) and how its reason starts."""

    kind: str
    entity: str
    data: bytes
    reason: str


MIB = 1 << 20
OVER_LIMIT = customer("C14", display_name="y" * (2 * MIB))
# Every kind of bad row, in file order. Each id is unique so the good rows can be checked.
KINDS = [
    Bad("nul_in_text", "customers", customer("C01", display_name=b"Ann\x00Lee"),
        "bad_encoding: display_name"),
    Bad("nul_in_id", "customers", customer("C\x0002"), "bad_encoding: customer_id"),
    Bad("bell_control", "customers", customer("C03", region=b"no\x07rth"),
        "bad_encoding: region"),
    Bad("terminal_escape", "customers", customer("C04", display_name=b"\x1b[31mred\x1b[0m"),
        "bad_encoding: display_name"),
    Bad("c1_control", "customers", customer("C05", display_name="Ann\x85Lee"),
        "bad_encoding: display_name"),
    Bad("delete_char", "customers", customer("C06", display_name=b"Ann\x7f"),
        "bad_encoding: display_name"),
    Bad("bare_cr", "customers", customer("C07", display_name=b"Ann\rLee"),
        "bad_encoding: a carriage return (CR) inside a line"),
    Bad("bare_cr_quoted", "customers", customer("C08", display_name=b'"Ann\rLee"'),
        "bad_encoding: a carriage return (CR) inside a line"),
    Bad("line_break_in_value", "customers", customer("C09", display_name=b'"Ann\nLee"'),
        "bad_encoding: display_name"),
    Bad("invalid_utf8", "customers", customer("C10", display_name=b"Caf\xe9"),
        "bad_encoding: invalid UTF-8 byte 0xe9"),
    Bad("utf8_surrogate", "customers", customer("C11", display_name=b"\xed\xa0\x80"),
        "bad_encoding: invalid UTF-8 byte 0xed"),
    Bad("long_name", "customers", customer("C12", display_name="n" * 300),
        "too_long: display_name is longer than 200"),
    Bad("field_over_128k", "customers", customer("C13", display_name="x" * (200 * 1024)),
        "too_long: display_name is longer than 200"),
    Bad("line_over_limit", "customers", OVER_LIMIT,
        f"too_long: the line is {len(OVER_LIMIT)} bytes, longer than {MAX_LINE_BYTES}"),
    Bad("long_id", "customers", customer("C" * 65), "too_long: customer_id"),
    Bad("missing_id", "customers", customer(""), "missing_id: customer_id"),
    Bad("too_many_fields", "customers", customer("C17", tier="gold,extra"),
        "malformed_row: expected 12 fields, found 13"),
    Bad("too_few_fields", "customers", b"C18,Ann,25-34\n",
        "malformed_row: expected 12 fields, found 3"),
    Bad("year_one", "customers", customer("C19", signup_date="0001-01-01"),
        "out_of_range: signup_date '0001-01-01' is before 1900-01-01"),
    Bad("before_1900", "customers", customer("C20", signup_date="1899-12-31"),
        "out_of_range: signup_date '1899-12-31'"),
    Bad("five_digit_year", "customers", customer("C21", signup_date="20250-01-01"),
        "bad_date: signup_date '20250-01-01'"),
    Bad("amount_1e308", "customers", customer("C22", arpu="1e308"),
        "out_of_range: arpu '1e308' is beyond ±9999999999.99"),
    Bad("amount_1e10", "customers", customer("C23", arpu="10000000000"),
        "out_of_range: arpu '10000000000'"),
    Bad("amount_rounds_over", "customers", customer("C24", arpu="9999999999.996"),
        "out_of_range: arpu '9999999999.996'"),
    Bad("amount_infinity", "customers", customer("C25", arpu="Infinity"),
        "not_finite: arpu is infinite"),
    Bad("amount_nan", "customers", customer("C26", arpu="NaN"), "not_finite: arpu is NaN"),
    Bad("amount_minus_1e308", "customers", customer("C27", arpu="-1e308"),
        "negative_amount: arpu '-1e308'"),
    Bad("measure_1e300", "customers", customer("C28", data_gb_month="1e300"),
        "out_of_range: data_gb_month '1e300'"),
    Bad("nul_in_attribute", "customers", customer("C29", tier=b"go\x00ld"),
        "bad_encoding: tier"),
    Bad("long_attribute", "customers", customer("C30", tier="t" * 300),
        "too_long: attribute tier"),
    Bad("formula_equals", "customers", customer("=HYPERLINK(\"http://x\")"), "bad_id:"),
    Bad("formula_plus", "customers", customer("+1+cmd|' /C calc'!A0"), "bad_id:"),
    Bad("formula_minus", "customers", customer("-2+3"), "bad_id:"),
    Bad("formula_at", "customers", customer("@SUM(A1)"), "bad_id:"),
    Bad("formula_tab", "customers", customer("\tC35"), "bad_id:"),
    # Last of its file but for good rows after it: only one line is lost, not the rest.
    Bad("unclosed_quote", "customers", customer("C36", display_name=b'"Ann'),
        "malformed_row: a quote opened on this line is not closed"),
    Bad("int_over_32_bits", "products", row("products", product_id="P1",
        min_tenure_months="99999999999"), "out_of_range: min_tenure_months"),
    Bad("int_1e20", "products", row("products", product_id="P2", min_tenure_months="1e20"),
        "out_of_range: min_tenure_months '1e20'"),
    Bad("price_1e308", "products", row("products", product_id="P3", price="1e308"),
        "out_of_range: price '1e308'"),
    Bad("start_1066", "subscriptions", row("subscriptions", subscription_id="S3",
        start_date="1066-10-14"), "out_of_range: start_date '1066-10-14'"),
    Bad("end_year_one", "subscriptions", row("subscriptions", subscription_id="S4",
        end_date="0001-01-01"), "out_of_range: end_date"),
    Bad("price_1e12", "subscriptions", row("subscriptions", subscription_id="S5",
        monthly_price="1e12"), "out_of_range: monthly_price"),
    Bad("transaction_1e308", "transactions", row("transactions", transaction_id="T2",
        amount="1e308"), "out_of_range: amount '1e308'"),
    Bad("transaction_1e10", "transactions", row("transactions", transaction_id="T3",
        amount="1e10"), "out_of_range: amount '1e10'"),
    Bad("transaction_30_digits", "transactions", row("transactions", transaction_id="T4",
        amount="123456789012345678901234567890"), "out_of_range: amount"),
    Bad("timestamp_year_one", "transactions", row("transactions", transaction_id="T5",
        ts="0001-01-01T00:00:00Z"), "out_of_range: ts"),
    Bad("nul_in_timestamp", "transactions", row("transactions", transaction_id="T6",
        ts=b"2024-01-01T09:00:00Z\x00"), "bad_encoding: ts"),
    Bad("nul_in_channel", "transactions", row("transactions", transaction_id="T7",
        channel=b"web\x00"), "bad_encoding: channel"),
    Bad("long_session", "events", row("events", event_id="E2", session_id="s" * 129),
        "too_long: session_id"),
    Bad("escape_in_session", "events", row("events", event_id="E3", session_id=b"s\x1b[2J"),
        "bad_encoding: session_id"),
]  # fmt: skip

# Good rows around the bad ones; some are edge cases that must load as they are.
GOOD = {
    "products": [
        row("products"),
        row("products", product_id="ADD", name="Extra", price="5", margin="4", category="addon"),
    ],
    "customers": [
        customer("G1"),
        customer("G2", display_name='5" screen'),  # a quote inside a value is a character
        customer("G3", arpu="9999999999.99"),  # the largest amount a column holds
        customer("G4", display_name="Zoë Ünal", signup_date="1900-01-01"),
    ],
    "subscriptions": [
        row("subscriptions"),
        row("subscriptions", subscription_id="S2", customer_id="G2", end_date="2999-12-31"),
    ],
    "transactions": [row("transactions")],
    "events": [row("events")],
}
GOOD_AFTER = {"customers": [customer("G5"), customer("G6", display_name="Bo")]}
LOADED = {
    "products": {"MOB", "ADD"},
    "customers": {"G1", "G2", "G3", "G4", "G5", "G6"},
    "subscriptions": {"S1", "S2"},
    "transactions": {"T1", "T8"},
    "events": {"E1"},
}


# Parquet holds typed values: the same limits apply once they are read as text.
PARQUET = pa.table(
    {
        "transaction_id": ["T8", "T9", "T10", "T11", "T12"],
        "customer_id": ["G1"] * 5,
        "product_id": ["MOB"] * 5,
        "ts": pa.array(
            [datetime(2024, 3, 1, tzinfo=UTC)] * 3
            + [datetime(1, 1, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)],
            pa.timestamp("us", tz="UTC"),
        ),
        "type": ["purchase"] * 5,
        "amount": [12.5, 1e308, 12.5, 12.5, math.inf],
        "channel": ["web", "web", "web\x00", "web", "web"],
    }
)
PARQUET_BAD = {
    2: "out_of_range: amount",
    3: "bad_encoding: channel",
    4: "out_of_range: ts",
    5: "not_finite: amount is infinite",
}


def expected_raw(data: bytes) -> str:
    """The raw text quarantine keeps: the lines, decoded (bad bytes as U+FFFD), NUL as U+FFFD."""
    text = data.decode("utf-8", errors="replace").removesuffix("\n")
    if len(data) > MAX_LINE_BYTES:
        text = data[:4096].decode("utf-8", errors="replace")
    return text.replace("\x00", "\ufffd")


def write_hostile(folder: Path) -> dict[tuple[str, int], Bad]:
    """Write one file per entity; returns each bad row by (entity, first line)."""
    folder.mkdir(parents=True)
    placed: dict[tuple[str, int], Bad] = {}
    for entity, header in HEADERS.items():
        lines = [header.encode() + b"\n", *GOOD[entity]]
        for bad in (k for k in KINDS if k.entity == entity):
            placed[(entity, len(lines) + 1)] = bad
            lines += [line + b"\n" for line in bad.data.removesuffix(b"\n").split(b"\n")]
        lines += GOOD_AFTER.get(entity, [])
        (folder / f"{entity}.csv").write_bytes(b"".join(lines))
    pq.write_table(PARQUET, folder / "transactions-typed.parquet")
    return placed


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def test_kinds_of_bad_rows_are_many_and_distinct() -> None:
    assert len({k.kind for k in KINDS}) == len(KINDS) >= 30


def test_every_bad_row_is_quarantined_with_its_reason_and_the_rest_loads(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    placed = write_hostile(tmp_path / "hostile")
    settings = Settings(database_url=database_url, var_dir=tmp_path / "var")

    result = run_ingest(engine, settings, tmp_path / "hostile")

    quarantined = dump_quarantine(engine)
    stored = {(q[0], q[3]): (q[4], q[5]) for q in quarantined if q[1].endswith(".csv")}
    assert sorted(stored) == sorted(placed)
    for place, bad in placed.items():
        reason, raw = stored[place]
        assert reason.startswith(bad.reason), (bad.kind, reason)
        assert raw == expected_raw(bad.data), bad.kind
        assert "\x00" not in reason + raw
    typed = {q[3]: q[4] for q in quarantined if q[1].endswith(".parquet")}
    assert typed.keys() == PARQUET_BAD.keys()
    for number, reason in PARQUET_BAD.items():
        assert typed[number].startswith(reason), (number, typed[number])
    assert result.rows_quarantined == len(KINDS) + len(PARQUET_BAD)
    for entity, ids in LOADED.items():
        assert set(dump_rows(engine, entity)) == ids, entity
    customers = dump_rows(engine, "customers")
    assert customers["G2"]["display_name"] == '5" screen'
    assert customers["G3"]["arpu"] == Decimal("9999999999.99")
    assert customers["G4"]["display_name"] == "Zoë Ünal"
    assert str(dump_rows(engine, "subscriptions")["S2"]["end_date"]) == "2999-12-31"
    with engine.connect() as conn:
        assert conn.execute(select(JobRun.status)).scalar_one() == "succeeded"

    # The quarantine files hold the same rows, each raw line defused for spreadsheets.
    on_disk: dict[tuple[str, int], tuple[str, str]] = {}
    for path in settings.quarantine_dir.glob("*.csv"):
        with path.open(newline="", encoding="utf-8") as handle:
            records = list(csv.reader(handle))
        assert records[0] == ["line", "reason", "raw"]
        if ".csv." in path.name:  # <entity>.<file>.<hash>.csv, of a CSV file
            on_disk |= {(path.name.split(".")[0], int(n)): (r, raw) for n, r, raw in records[1:]}
    assert sorted(on_disk) == sorted(placed)
    for place, bad in placed.items():
        assert on_disk[place] == (stored[place][0], safe_cell(expected_raw(bad.data))), bad.kind
    formulas = [p for p, b in placed.items() if b.kind.startswith("formula_")]
    assert len(formulas) == 5
    assert all(on_disk[p][1].startswith("'") for p in formulas)

    # Nothing stored breaks the features (H2: an infinite amount did, on SQLite).
    run_features(engine, settings, as_of=datetime(2026, 6, 1, tzinfo=UTC))
    with engine.connect() as conn:
        features = conn.execute(select(UserFeatures)).mappings().all()
    assert {f["customer_id"] for f in features} == LOADED["customers"]
    numbers = [float(v) for f in features for v in f.values() if isinstance(v, float | Decimal)]
    assert numbers and all(math.isfinite(v) for v in numbers)


def gzip_bomb(path: Path, header: bytes, before: bytes, after: bytes, mib: int) -> None:
    """A gzip file of a few hundred KB that expands to one line of `mib` MiB between rows.

    Concatenated gzip members are one stream to a reader; one member of a MiB of the same
    byte, repeated, keeps the file small and quick to write.
    """
    filler = gzip.compress(b"B" * MIB, compresslevel=9)
    with path.open("wb") as handle:
        handle.write(gzip.compress(header + before + b"BOMB,"))
        for _ in range(mib):
            handle.write(filler)
        handle.write(gzip.compress(b"\n" + after))


class PeakMemory:
    """The most resident memory above the start of a `with` block, sampled every 2 ms."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def resident() -> int:
        pages = Path("/proc/self/statm").read_text().split()[1]
        return int(pages) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self.resident() - self.baseline)

    def __enter__(self) -> PeakMemory:
        self.baseline = self.resident()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads /proc for memory")
def test_huge_lines_a_gzip_bomb_and_an_open_quote_load_the_rest_in_bounded_memory(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "big"
    folder.mkdir()
    header = HEADERS["customers"].encode() + b"\n"
    gzip_bomb(folder / "customers.csv.gz", header, customer("G1"), customer("G2"), mib=400)
    assert (folder / "customers.csv.gz").stat().st_size < 600_000
    # A 50 MB line, then a quote that never closes followed by more than the line limit
    # of good rows: one line is lost each time, never the rows after it.
    many = [
        row("products", product_id=f"P{i:05d}", name="n" * 200)
        for i in range(MAX_LINE_BYTES // 200 + 1)
    ]
    with (folder / "products.csv").open("wb") as handle:
        handle.write(HEADERS["products"].encode() + b"\n" + row("products"))
        handle.write(b"HUGE," + b"h" * (50 * 1000 * 1000) + b"\n")
        handle.write(row("products", product_id="OPEN", name='"Mobile'))
        handle.writelines(many)
    settings = Settings(database_url=database_url, var_dir=tmp_path / "var")

    with PeakMemory() as memory:
        result = run_ingest(engine, settings, folder)

    # Held whole, the 400 MB line alone would be 400 MB (it was 1.4 GB); a bounded read
    # holds a block (16 MB by default) and a line at a time.
    assert memory.peak < 200 * MIB, f"{memory.peak / MIB:.0f} MiB more memory"
    stored = {(q[0], q[3]): q[4] for q in dump_quarantine(engine)}
    assert stored.keys() == {("customers", 3), ("products", 3), ("products", 4)}
    assert stored[("customers", 3)].startswith(f"too_long: the line is {400 * MIB + 6} bytes")
    assert stored[("products", 3)].startswith("too_long: the line is 50000006 bytes")
    assert stored[("products", 4)].startswith("malformed_row: a quote opened on this line")
    assert set(dump_rows(engine, "customers")) == {"G1", "G2"}
    assert len(dump_rows(engine, "products")) == 1 + len(many)
    assert result.rows_quarantined == 3
