"""Validation kernels over Arrow text in bulk: plain numbers read, keys hashed.

Columns read from a file are Arrow-backed text; these work on the whole column (Arrow
compute, numpy over the string buffers) instead of a Python object per value. Where a
kernel cannot answer exactly as the pandas check it stands in for (`plain_numbers` on an
exponent, say), it returns None and that check runs instead.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def arrow_text(text: pd.Series) -> pa.Array | None:
    """The column as Arrow text, without a copy, if it is gapless Arrow-backed text.

    That is what the readers give; anything else (derived frames) is left to pandas.
    """
    if not (isinstance(text.dtype, pd.StringDtype) and text.dtype.storage == "pyarrow"):
        return None
    array = pa.array(text)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return None if array.null_count else array


def mask(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An Arrow boolean result as a numpy mask (null: False)."""
    return np.asarray(values.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _layout(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(start offsets with the end appended, bytes) of a string array, rebased to 0."""
    kind = np.int64 if pa.types.is_large_string(array.type) else np.int32
    offsets = np.frombuffer(array.buffers()[1], dtype=kind)[
        array.offset : array.offset + len(array) + 1
    ].astype(np.int64)
    data = np.frombuffer(array.buffers()[2] or b"", dtype=np.uint8)[offsets[0] : offsets[-1]]
    return offsets - offsets[0], data


PLAIN_DECIMAL = r"^-?[0-9]{1,9}(\.[0-9]{1,6})?$"
"""At most 15 significant digits: every correct parser reads such text as the same float."""


def plain_numbers(array: pa.Array, present: np.ndarray) -> np.ndarray | None:
    """Floats (NaN where absent) if every present value is a plain decimal, else None.

    Arrow's cast reads those exactly as `pd.to_numeric` does, at a fraction of the cost;
    other text (exponents, NaN, words) is left to `pd.to_numeric`.
    """
    plain = mask(pc.match_substring_regex(array, PLAIN_DECIMAL))
    if (present & ~plain).any():
        return None
    kept = pc.if_else(pa.array(present), array, pa.scalar(None, array.type))
    return np.asarray(pc.cast(kept, pa.float64()).to_numpy(zero_copy_only=False), dtype=float)


_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def _avalanche(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit moves every output bit."""
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    mixed: np.ndarray = h ^ (h >> np.uint64(31))
    return mixed


def text_hashes(array: pa.Array) -> np.ndarray:
    """A 64-bit hash of each string (FNV-1a over its bytes, then mixed with its length).

    One numpy pass per byte position rather than a Python call per value.
    """
    offsets, data = _layout(array)
    lengths = np.diff(offsets)
    h = np.full(len(lengths), _FNV_OFFSET, dtype=np.uint64)
    starts = offsets[:-1]
    with np.errstate(over="ignore"):
        for j in range(int(lengths.max(initial=0))):
            live = lengths > j
            if live.all():
                h = (h ^ data[starts + j]) * _FNV_PRIME
            else:
                rows = np.flatnonzero(live)
                h[rows] = (h[rows] ^ data[starts[rows] + j]) * _FNV_PRIME
        return _avalanche(h ^ lengths.astype(np.uint64))


def key_hashes(columns: list[pa.Array]) -> np.ndarray:
    """A 64-bit hash of each row's key (one or more text columns)."""
    combined = np.zeros(len(columns[0]), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in columns:
            combined = _avalanche(combined * np.uint64(31) + text_hashes(column))
    return combined
