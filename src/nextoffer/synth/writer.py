"""Fast, exact CSV text for the import format: columns become strings, rows become lines."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nextoffer.synth.arrays import F64, I64, BoolA

DAY = 86400

# pyarrow is untyped here; its arrays travel as Any.
Column = Any


def _strings(values: Sequence[str]) -> Column:
    return pa.array(list(values), type=pa.string())


CLOCK = _strings(
    [f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)]
)


class Text:
    """Formats numpy columns as the exact text the import format wants.

    Dates and times come from lookup tables (a day table covering the world's calendar),
    which is several times faster than strftime and gives the same text.
    """

    def __init__(self, first_day: int, last_day: int) -> None:
        self.first_day = first_day
        days = np.arange(first_day, last_day + 1, dtype=np.int32)
        self.day_table = pa.array(days, type=pa.date32()).cast(pa.string())

    @staticmethod
    def integers(values: I64) -> Column:
        """Decimal integers."""
        return pa.array(np.asarray(values, dtype=np.int64)).cast(pa.string())

    def ids(self, prefix: str, numbers: I64, width: int, present: BoolA | None = None) -> Column:
        """Prefix + zero-padded number, e.g. C00000042; empty where not present."""
        padded = pc.utf8_lpad(self.integers(numbers), width=width, padding="0")
        text = pc.binary_join_element_wise(prefix, padded, "")
        if present is not None:
            text = pc.if_else(pa.array(np.asarray(present)), text, pa.scalar(None, pa.string()))
        return text

    def child_ids(self, prefix: str, parent: I64, width: int, rank: I64, rank_width: int) -> Column:
        """Ids scoped to a customer: prefix + number + '-' + rank, e.g. T00000042-003."""
        left = self.ids(prefix, parent, width)
        right = pc.utf8_lpad(self.integers(rank), width=rank_width, padding="0")
        return pc.binary_join_element_wise(left, right, "-")

    def dates(self, days: I64, present: BoolA | None = None) -> Column:
        """YYYY-MM-DD, or empty where not present."""
        idx = np.asarray(days, dtype=np.int64) - self.first_day
        if present is not None:
            idx = np.where(present, idx, 0)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self.day_table)):
            raise ValueError("a date falls outside the world's calendar")
        mask = None if present is None else ~np.asarray(present)
        return pc.take(self.day_table, pa.array(idx, mask=mask))

    def timestamps(self, secs: I64) -> Column:
        """ISO-8601 UTC, e.g. 2026-03-04T12:30:00Z."""
        secs = np.asarray(secs, dtype=np.int64)
        date = self.dates(secs // DAY)
        clock = pc.take(CLOCK, pa.array(secs % DAY))
        return pc.binary_join_element_wise(date, "T", clock, "Z", "")

    def decimals(self, scaled: I64, places: int) -> Column:
        """A fixed-point number given as an integer scaled by 10**places (sign kept)."""
        scaled = np.asarray(scaled, dtype=np.int64)
        unit = 10**places
        magnitude = np.abs(scaled)
        whole = self.integers(magnitude // unit)
        frac = pc.utf8_lpad(self.integers(magnitude % unit), width=places, padding="0")
        text = pc.binary_join_element_wise(whole, frac, ".")
        if (scaled < 0).any():
            sign = pc.take(_strings(["", "-"]), pa.array((scaled < 0).astype(np.int64)))
            text = pc.binary_join_element_wise(sign, text, "")
        return text

    def money(self, cents: I64) -> Column:
        """Money with two decimals, e.g. 12.50."""
        return self.decimals(cents, 2)

    def floats(self, values: F64, places: int) -> Column:
        """Floats rounded to `places` decimals, printed without exponent; NaN becomes empty."""
        values = np.asarray(values, dtype=np.float64)
        missing = np.isnan(values)
        scaled = np.round(np.where(missing, 0.0, values) * 10**places).astype(np.int64)
        text = self.decimals(scaled, places)
        if missing.any():
            text = pc.if_else(pa.array(missing), pa.scalar(None, pa.string()), text)
        return text

    @staticmethod
    def choice(labels: Sequence[str], idx: I64, present: BoolA | None = None) -> Column:
        """labels[idx], or empty where not present (or idx < 0)."""
        idx = np.asarray(idx, dtype=np.int64)
        mask = idx < 0 if present is None else ~np.asarray(present) | (idx < 0)
        return pc.take(_strings(labels), pa.array(np.maximum(idx, 0), mask=mask))

    @staticmethod
    def constant(value: str, n: int) -> Column:
        """The same text n times."""
        return pa.array(np.full(n, value, dtype=object), type=pa.string())


def join(left: Column, right: Column, sep: str) -> Column:
    """Left + sep + right, element-wise."""
    return pc.binary_join_element_wise(left, right, sep)


def write_header(fh: BinaryIO, names: Sequence[str]) -> None:
    """The header line."""
    fh.write((",".join(names) + "\n").encode("utf-8"))


def write_rows(fh: BinaryIO, columns: Sequence[Column], batch: int = 1 << 20) -> int:
    """Join string columns with commas (null = empty), one line per row; returns the rows."""
    rows = len(columns[0]) if columns else 0
    for lo in range(0, rows, batch):
        # Batches keep each joined buffer far below pyarrow's 2 GiB string-offset limit.
        part = [c.slice(lo, batch) for c in columns]
        line = pc.binary_join_element_wise(*part, ",", null_handling="replace", null_replacement="")
        line = pc.binary_join_element_wise(line, "", "\n")
        if isinstance(line, pa.ChunkedArray):
            line = line.combine_chunks()
        # The joined lines sit back to back in the values buffer: write it in one go.
        offsets = np.frombuffer(line.buffers()[1], dtype=np.int32)
        offsets = offsets[line.offset : line.offset + len(line) + 1]
        fh.write(memoryview(line.buffers()[2])[int(offsets[0]) : int(offsets[-1])])
    return rows
