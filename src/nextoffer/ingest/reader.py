"""Streaming readers: CSV in byte blocks (exact line numbers, bad bytes found) and Parquet."""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any, cast

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from nextoffer.domain.errors import InputError
from nextoffer.domain.limits import MAX_LINE_BYTES
from nextoffer.ingest.layout import Layout, plan_layout
from nextoffer.ingest.lines import Rejected, read_blocks
from nextoffer.ingest.sources import SourceFile

log = logging.getLogger(__name__)

__all__ = [
    "RawChunk",
    "Rejected",
    "iter_chunks",
    "iter_csv",
    "iter_parquet",
    "read_header",
    "read_layout",
]

# Records are at most MAX_LINE_BYTES (ingest.lines), so a field may be that long; the csv
# module's default limit (128 KiB) would raise on one while locating quarantined rows.
csv.field_size_limit(max(csv.field_size_limit(), MAX_LINE_BYTES + 1))


@dataclass
class RawChunk:
    """A block of rows as text, plus the rows that could not even be parsed."""

    frame: pd.DataFrame
    rejected: list[Rejected]
    bytes_read: int
    first_line: int
    plain: bool = False
    """The reader saw no control character in these rows (validation skips that check)."""
    _block_bytes: bytes | None = None
    """The block as read; decoded only to locate rejected rows (`locate`)."""
    _parquet_rows: pa.Table | None = None
    _n_columns: int = 0
    _malformed_lines: frozenset[int] = field(default_factory=frozenset)

    def locate(self, positions: list[int]) -> list[tuple[int, str]]:
        """(line number, raw text) of the frame rows at `positions`, for quarantine."""
        if not positions:
            return []
        if self._parquet_rows is not None:
            rows = self._parquet_rows.take(pa.array(positions)).to_pylist()
            return [
                (self.first_line + p, json.dumps(r, default=str, ensure_ascii=False))
                for p, r in zip(positions, rows, strict=True)
            ]
        lines, raws = self._csv_lines()
        return [(lines[p], raws[p]) for p in positions]

    def _csv_lines(self) -> tuple[list[int], list[str]]:
        # Re-reading the block with the csv module is exact (quotes, blank lines) and only
        # happens for blocks that have rejected rows.
        assert self._block_bytes is not None
        lines: list[int] = []
        raws: list[str] = []
        for line, record, raw in _records(self._block_bytes.decode("utf-8"), self.first_line):
            if line in self._malformed_lines or len(record) != self._n_columns:
                continue
            lines.append(line)
            raws.append(raw)
        if len(lines) != len(self.frame):
            log.warning("line numbers in a block could not be matched exactly; using ordinals")
            lines = [self.first_line + i for i in range(len(self.frame))]
            raws = [",".join(map(str, r)) for r in self.frame.itertuples(index=False)]
        return lines, raws


def _records(text: str, first_line: int) -> Iterator[tuple[int, list[str], str]]:
    """(line number, fields, exact raw text) of each non-blank record of a block of CSV."""
    physical = text.split("\n")
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 1
    for record in reader:
        first, start = start, reader.line_num + 1
        if record:
            raw = "\n".join(p.removesuffix("\r") for p in physical[first - 1 : start - 1])
            yield first_line + first - 1, record, raw


def _open(source: SourceFile) -> IO[bytes]:
    if source.path.name.endswith(".gz"):
        return cast(IO[bytes], gzip.open(source.path, "rb"))
    return source.path.open("rb")


def read_header(source: SourceFile) -> list[str]:
    """The column names of a file, checked against the entity's required columns.

    A mapped file's names are checked by its layout instead (after the mapping's renames).
    """
    if source.is_parquet:
        names = list(pq.ParquetFile(source.path).schema_arrow.names)
    else:
        with _open(source) as handle:
            first = handle.readline(MAX_LINE_BYTES + 1)
        if len(first) > MAX_LINE_BYTES:
            raise InputError(
                f"{source.path}: the header line is longer than {MAX_LINE_BYTES} bytes"
            )
        try:
            text = first.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InputError(f"{source.path}: the header line is not UTF-8") from None
        names = [n.strip() for n in next(csv.reader([text]), [])]
    missing = [c for c in source.entity.required_columns if c not in names]
    if missing and source.mapping is None:
        raise InputError(
            f"{source.path}: missing required column(s) {', '.join(missing)} "
            f"for {source.entity.name}"
        )
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise InputError(f"{source.path}: duplicated column(s) {', '.join(duplicated)}")
    return names


def read_layout(source: SourceFile) -> Layout:
    """The file's header, checked, and the columns read from it (see `ingest.layout`)."""
    return plan_layout(source.entity, read_header(source), source.mapping, str(source.path))


def iter_csv(
    source: SourceFile, block_bytes: int, layout: Layout | None = None
) -> Iterator[RawChunk]:
    """Blocks of about `block_bytes`, cut at line ends, each parsed by pyarrow as text.

    Frames hold the entity's columns in its order (absent optional ones as empty text),
    then any other column the layout keeps: custom attributes, what a mapping reads.
    Lines are read with a bounded length (`ingest.lines`): what cannot be read is rejected
    before parsing.
    """
    header = read_header(source)
    layout = layout or plan_layout(source.entity, header, source.mapping, str(source.path))
    n_columns = len(header)
    wanted = list(layout.read)
    with _open(source) as handle:
        header_bytes = handle.readline(MAX_LINE_BYTES + 1)
        if header_bytes.startswith(b"\xef\xbb\xbf"):
            header_bytes = header_bytes[3:]
        if not header_bytes.endswith(b"\n"):
            header_bytes += b"\n"
        for block in read_blocks(handle, block_bytes, first_line=2):
            clean, first_line, rejected = block.data, block.first_line, block.rejected
            malformed: list[Rejected] = []

            def on_invalid(
                row: Any, _first: int = first_line, _out: list[Rejected] = malformed
            ) -> str:
                # pyarrow numbers rows from 1 including the header line we prepend.
                line = _first + row.number - 2 if row.number is not None else -1
                reason = (
                    f"malformed_row: expected {row.expected_columns} fields, "
                    f"found {row.actual_columns}"
                )
                _out.append(Rejected(line, reason, row.text))
                return "skip"

            table = pa_csv.read_csv(
                io.BytesIO(header_bytes + clean),
                read_options=pa_csv.ReadOptions(use_threads=False, block_size=1 << 26),
                parse_options=pa_csv.ParseOptions(invalid_row_handler=on_invalid),
                convert_options=pa_csv.ConvertOptions(
                    column_types={c: pa.string() for c in header},
                    include_columns=wanted,
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
            frame = layout.complete(table.to_pandas())
            if malformed:
                text = clean.decode("utf-8")
                # pyarrow's row numbers skip blank lines and count multi-line records once;
                # the csv module sees the same records and knows their physical lines.
                wrong = [
                    (line, raw)
                    for line, record, raw in _records(text, first_line)
                    if len(record) != n_columns
                ]
                if len(wrong) == len(malformed):
                    malformed[:] = [
                        Rejected(line, m.reason, raw)
                        for (line, raw), m in zip(wrong, malformed, strict=True)
                    ]
            rejected += malformed
            yield RawChunk(
                frame=frame,
                rejected=rejected,
                bytes_read=block.bytes_read,
                first_line=first_line,
                plain=block.plain,
                _block_bytes=clean,
                _n_columns=n_columns,
                _malformed_lines=frozenset(r.line for r in malformed),
            )


def iter_parquet(
    source: SourceFile, batch_rows: int, layout: Layout | None = None
) -> Iterator[RawChunk]:
    """Row batches of a Parquet file, every column turned to text for the same validation."""
    layout = layout or read_layout(source)
    parquet = pq.ParquetFile(source.path)
    wanted = list(layout.read)
    first = 1
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=wanted):
        table = pa.Table.from_batches([batch])
        text_columns = {}
        for name in table.column_names:
            column = table.column(name)
            if pa.types.is_timestamp(column.type):
                column = column.cast(pa.timestamp("us", tz="UTC"))
            text = column.cast(pa.string()).fill_null("")
            text_columns[name] = text
        frame = layout.complete(pa.table(text_columns).to_pandas())
        yield RawChunk(
            frame=frame,
            rejected=[],
            bytes_read=batch.nbytes,
            first_line=first,
            _parquet_rows=table,
        )
        first += batch.num_rows


def iter_chunks(
    source: SourceFile, block_bytes: int, layout: Layout | None = None
) -> Iterator[RawChunk]:
    """Chunks of any supported file; Parquet batches are sized to about the same bytes."""
    if source.is_parquet:
        return iter_parquet(source, max(1000, block_bytes // 100), layout)
    return iter_csv(source, block_bytes, layout)
