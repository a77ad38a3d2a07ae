"""The bulk validation kernels agree with the pandas checks they stand in for."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from nextoffer.ingest.text_kernels import arrow_text, key_hashes, plain_numbers


def text(values: list[str]) -> pa.Array:
    array = arrow_text(pd.Series(values, dtype="str"))
    assert array is not None
    return array


def test_plain_decimals_read_as_pandas_reads_them() -> None:
    values = ["1.5", "", "-0.00", "007", "123456789.123456", "0.1", "19.99"]
    present = np.array([v != "" for v in values])
    fast = plain_numbers(text(values), present)
    assert fast is not None
    slow = pd.to_numeric(pd.Series(values).where(present, None)).to_numpy(dtype=float)
    assert np.array_equal(fast, slow, equal_nan=True)


def test_anything_but_a_plain_decimal_is_left_to_pandas() -> None:
    for odd in ("1e5", "NaN", "inf", "+1", "1,5", " 1", "1234567890.5", "0.1234567"):
        assert plain_numbers(text(["1.0", odd]), np.ones(2, dtype=bool)) is None, odd


def test_only_gapless_arrow_text_takes_the_fast_path() -> None:
    assert arrow_text(pd.Series(["a", None], dtype="str")) is None
    assert arrow_text(pd.Series(["a", "b"], dtype=object)) is None


def test_key_hashes_tell_keys_apart_and_match_equal_ones() -> None:
    ids = text(["T1", "T2", "T1", "", "T10", "T1\u00e9"])
    hashes = key_hashes([ids])
    assert hashes[0] == hashes[2]
    assert len(set(hashes[[0, 1, 3, 4, 5]].tolist())) == 5
    # A composite key: the same parts in other columns are another key.
    left, right = text(["a", "ab"]), text(["bc", "c"])
    assert len(set(key_hashes([left, right]).tolist())) == 2
    # Sliced arrays (offsets not at 0) hash their own values.
    assert key_hashes([ids.slice(2)])[0] == hashes[0]
