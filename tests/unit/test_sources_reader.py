"""Finding import files and reading them: exact line numbers and raw text, blocks, formats."""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nextoffer.domain.errors import InputError
from nextoffer.ingest.entities import BY_NAME
from nextoffer.ingest.reader import RawChunk, iter_chunks, iter_csv, iter_parquet, read_header
from nextoffer.ingest.sources import SourceFile, discover, entity_for, file_sha256
from nextoffer.ingest.validate import ValidationContext, validate_chunk

PRODUCT_HEADER = "product_id,name,category,price,margin"


@pytest.mark.parametrize(
    ("name", "entity"),
    [
        ("products.csv", "products"),
        ("customers.csv.gz", "customers"),
        ("events-2026-11.csv.gz", "events"),
        ("events_part1.parquet", "events"),
        ("churn_labels.csv", "churn_labels"),
        ("churn_labels-2025.parquet", "churn_labels"),
        ("transactions.CSV", None),
        ("products.json", None),
        ("productsX.csv", None),
        ("my_products.csv", None),
        ("events.csv.bak", None),
        ("readme.txt", None),
    ],
)
def test_entity_for(name: str, entity: str | None) -> None:
    found = entity_for(Path(name))
    assert (found.name if found else None) == entity


def touch(path: Path, text: str = "x\n") -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_discover_orders_by_dependency_then_name(tmp_path: Path) -> None:
    for name in (
        "events-2.csv",
        "events-1.csv.gz",
        "churn_labels.csv",
        "customers.parquet",
        "products.csv",
        "notes.txt",
        "transactions.csv",
    ):
        touch(tmp_path / name)
    (tmp_path / "subscriptions.csv").mkdir()  # a folder is not a file
    found = discover(tmp_path)
    assert [s.path.name for s in found] == [
        "products.csv",
        "customers.parquet",
        "transactions.csv",
        "events-1.csv.gz",
        "events-2.csv",
        "churn_labels.csv",
    ]
    assert [s.entity.name for s in found][:2] == ["products", "customers"]
    assert found[0].sha256 == hashlib.sha256(b"x\n").hexdigest() == file_sha256(found[0].path)
    assert found[0].size == 2


def test_discover_one_file_and_errors(tmp_path: Path) -> None:
    one = touch(tmp_path / "events.csv")
    assert [s.path for s in discover(one)] == [one]
    with pytest.raises(InputError, match="no such file or folder"):
        discover(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    touch(empty / "notes.txt")
    with pytest.raises(InputError, match="no import files found"):
        discover(empty)


def source(path: Path) -> SourceFile:
    (found,) = discover(path)
    return found


def write_bytes(path: Path, data: bytes) -> SourceFile:
    path.write_bytes(data)
    return source(path)


def test_read_header(tmp_path: Path) -> None:
    bom = write_bytes(
        tmp_path / "products.csv", b"\xef\xbb\xbf" + PRODUCT_HEADER.encode() + b"\r\n"
    )
    assert read_header(bom) == PRODUCT_HEADER.split(",")

    missing = write_bytes(tmp_path / "products.csv", b"product_id,name,price\n")
    with pytest.raises(InputError, match="missing required column\\(s\\) category, margin"):
        read_header(missing)

    twice = write_bytes(tmp_path / "products.csv", (PRODUCT_HEADER + ",name\n").encode())
    with pytest.raises(InputError, match="duplicated column\\(s\\) name"):
        read_header(twice)

    latin1 = write_bytes(tmp_path / "products.csv", PRODUCT_HEADER.encode() + b",caf\xe9\n")
    with pytest.raises(InputError, match="header line is not UTF-8"):
        read_header(latin1)


def all_rows(chunks: list[RawChunk]) -> list[tuple[int, str]]:
    """(line, raw text) of every parsed row, over every chunk."""
    out: list[tuple[int, str]] = []
    for chunk in chunks:
        out.extend(chunk.locate(list(range(len(chunk.frame)))))
    return out


MESSY_LINES = [
    PRODUCT_HEADER,  # 1, after a byte-order mark
    'P1,"Plan, one",mobile_plan,10,3',  # 2: a quoted comma
    "",  # 3
    "P2,Two,mobile_plan,10",  # 4: one field short
    "",  # 5
    "",  # 6
    'P3,"Three ""quoted""",fax,10,3',  # 7: escaped quotes, bad enum
    "P4,Four,mobile_plan,10,3,extra",  # 8: one field too many
    'P5,"Multi',  # 9: a value over two lines
    'line",mobile_plan,10,3',  # 10
    "P6,Six,bad,1,1",  # 11: bad enum
    "P7,\udce9t\udce9,mobile_plan,1,1",  # 12: not UTF-8 (written as Latin-1 bytes below)
    "P8,Eight,addon,1,1",  # 13
]


def messy_bytes(line_end: bytes) -> bytes:
    lines = [line.encode("utf-8", errors="surrogateescape") for line in MESSY_LINES]
    return b"\xef\xbb\xbf" + line_end.join(lines) + line_end


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n"], ids=["lf", "crlf"])
def test_csv_line_numbers_and_raw_text_are_exact(tmp_path: Path, line_end: bytes) -> None:
    src = write_bytes(tmp_path / "products.csv", messy_bytes(line_end))
    (chunk,) = list(iter_csv(src, 1 << 20))

    assert all_rows([chunk]) == [
        (2, 'P1,"Plan, one",mobile_plan,10,3'),
        (7, 'P3,"Three ""quoted""",fax,10,3'),
        (9, 'P5,"Multi\nline",mobile_plan,10,3'),
        (11, "P6,Six,bad,1,1"),
        (13, "P8,Eight,addon,1,1"),
    ]
    assert chunk.frame["name"].tolist() == [
        "Plan, one",
        'Three "quoted"',
        "Multi" + line_end.decode() + "line",  # a line break inside quotes is data
        "Six",
        "Eight",
    ]
    rejected = sorted((r.line, r.reason.split(":")[0], r.raw) for r in chunk.rejected)
    assert rejected == [
        (4, "malformed_row", "P2,Two,mobile_plan,10"),
        (8, "malformed_row", "P4,Four,mobile_plan,10,3,extra"),
        (12, "bad_encoding", "P7,\ufffdt\ufffd,mobile_plan,1,1"),
    ]

    checked = validate_chunk(
        BY_NAME["products"], chunk.frame, ValidationContext(now=datetime.now(UTC))
    )
    located = chunk.locate(checked.bad_positions)
    assert [line for line, _ in located] == [7, 9, 11]
    # Read as data, a line break is then refused in a stored value (domain.limits).
    assert [reason.split(":")[0] for reason in checked.bad_reasons] == [
        "bad_enum",
        "bad_encoding",
        "bad_enum",
    ]


def test_small_blocks_keep_line_numbers_and_cover_every_row(tmp_path: Path) -> None:
    src = write_bytes(tmp_path / "products.csv", messy_bytes(b"\n"))
    whole = list(iter_csv(src, 1 << 20))
    # Tiny blocks end at line ends; a quoted value over two lines must not be split.
    for block_bytes in (1, 16, 40, 64):
        chunks = list(iter_csv(src, block_bytes))
        assert len(chunks) > 1
        assert all_rows(chunks) == all_rows(whole), block_bytes
        rejected = sorted((r.line, r.reason) for c in chunks for r in c.rejected)
        assert rejected == sorted((r.line, r.reason) for r in whole[0].rejected)
        assert sum(c.bytes_read for c in chunks) == src.size - len(
            b"\xef\xbb\xbf" + PRODUCT_HEADER.encode() + b"\n"
        )
        assert [c.first_line for c in chunks] == sorted(c.first_line for c in chunks)


def test_columns_in_any_order_extra_ignored_missing_optional_empty(tmp_path: Path) -> None:
    src = write_bytes(
        tmp_path / "products.csv",
        b"margin,unused,price,product_id,category,name,active\n3,zz,10,P1,addon,One,no\n",
    )
    (chunk,) = list(iter_chunks(src, 1 << 20))
    assert list(chunk.frame.columns) == BY_NAME["products"].column_names
    row = chunk.frame.iloc[0].to_dict()
    assert row["product_id"] == "P1"
    assert (row["price"], row["margin"], row["active"]) == ("10", "3", "no")
    assert row["upfront_price"] == "" and row["channels"] == ""
    assert chunk.locate([0]) == [(2, "3,zz,10,P1,addon,One,no")]


def test_gzip_reads_like_plain(tmp_path: Path) -> None:
    data = messy_bytes(b"\n")
    (tmp_path / "plain").mkdir()
    (tmp_path / "packed").mkdir()
    plain = write_bytes(tmp_path / "plain" / "products.csv", data)
    packed = write_bytes(tmp_path / "packed" / "products.csv.gz", gzip.compress(data))
    for block_bytes in (1 << 20, 32):
        a = list(iter_chunks(plain, block_bytes))
        b = list(iter_chunks(packed, block_bytes))
        assert all_rows(a) == all_rows(b)
        assert [r for c in a for r in c.rejected] == [r for c in b for r in c.rejected]
        assert pd.concat([c.frame for c in a]).equals(pd.concat([c.frame for c in b]))


def test_parquet_batches_become_text_rows_numbered_from_one(tmp_path: Path) -> None:
    table = pa.table(
        {
            "transaction_id": ["T1", "T2", "T3"],
            "customer_id": ["C1", "C1", "C2"],
            "product_id": ["P1", "P1", "P2"],
            "ts": pa.array(
                [
                    datetime(2024, 3, 1, 8, 30, tzinfo=UTC),
                    datetime(2024, 3, 1, 10, 30, 0, 500000, tzinfo=UTC),
                    None,
                ],
                type=pa.timestamp("us", tz="Europe/Paris"),
            ),
            "type": ["purchase", "purchase", "purchase"],
            "amount": [19.999, 5.0, -1.0],
            "channel": [None, "web", "app"],
        }
    )
    pq.write_table(table, tmp_path / "transactions.parquet", row_group_size=2)
    src = source(tmp_path / "transactions.parquet")
    chunks = list(iter_parquet(src, batch_rows=2))
    assert [c.first_line for c in chunks] == [1, 3]
    frame = pd.concat([c.frame for c in chunks], ignore_index=True)
    assert list(frame.columns) == BY_NAME["transactions"].column_names
    assert frame["amount"].tolist() == ["19.999", "5", "-1"]
    assert frame["channel"].tolist() == ["", "web", "app"]
    assert frame["ts"].iloc[2] == ""

    ctx = ValidationContext(now=datetime.now(UTC))
    first = validate_chunk(BY_NAME["transactions"], chunks[0].frame, ctx)
    assert first.bad_positions == []
    assert first.good["ts"].tolist() == [
        pd.Timestamp("2024-03-01T08:30:00Z"),
        pd.Timestamp("2024-03-01T10:30:00.5Z"),
    ]
    assert first.good["amount"].tolist() == [20.0, 5.0]
    second = validate_chunk(BY_NAME["transactions"], chunks[1].frame, ctx)
    assert [r.split(":")[0] for r in second.bad_reasons] == ["missing_value"]
    ((line, raw),) = chunks[1].locate(second.bad_positions)
    assert line == 3
    assert json.loads(raw)["transaction_id"] == "T3"
