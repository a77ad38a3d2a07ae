"""Limits every input obeys, at ingest, the API and the console alike: one place, one truth."""

from __future__ import annotations

import math
import re
from datetime import date
from decimal import Decimal, InvalidOperation

MAX_ID_LEN = 64
"""Ids (customer, product, event, session, experiment): the columns are String(64)."""
MAX_NAME_LEN = 256
"""Short free text: names, categories, segments, channels, search boxes."""
MAX_TEXT_LEN = 4096
"""Longer free text: descriptions, reasons, notes, raw JSON attributes."""
MAX_LINE_BYTES = 1_048_576
"""The longest import line read; a longer one is quarantined as `too_long`, never buffered."""

MONEY_LIMIT = Decimal("9999999999.99")
"""Largest magnitude a Numeric(12, 2) column holds, checked after rounding to cents."""
INT_LIMIT = 2**31 - 1
"""Largest magnitude an Integer column holds (PostgreSQL's integer; SQLite would take more)."""
FLOAT_LIMIT = 1e15
"""Largest magnitude of a measure (usage per month, a numeric attribute): far above any real
one, and small enough that sums and squares over millions of rows stay finite."""
EARLIEST_DATE = date(1900, 1, 1)
LATEST_DATE = date(2100, 12, 31)
"""Dates outside this window are typos (year 1, year 20250), not history."""

# NUL and the C0/C1 controls except tab; PostgreSQL refuses NUL in text outright and the
# rest break CSV exports, logs and terminals. Line breaks are refused too: no single value
# we store is multi-line.
CONTROL_PATTERN = r"[\x00-\x08\x0a-\x1f\x7f-\x9f]"
"""The characters refused, as a pattern both Python's `re` and Arrow's RE2 understand."""
_CONTROL = re.compile(CONTROL_PATTERN)

BAD_ENCODING = "bad_encoding"
TOO_LONG = "too_long"
OUT_OF_RANGE = "out_of_range"


def text_problem(value: str, max_len: int = MAX_NAME_LEN) -> str | None:
    """Why `value` may not be stored as text (`bad_encoding`, `too_long`), or None if it may."""
    if _CONTROL.search(value) or _has_lone_surrogate(value):
        return BAD_ENCODING
    if len(value) > max_len:
        return TOO_LONG
    return None


def check_text(value: str, max_len: int = MAX_NAME_LEN) -> str:
    """`value` itself, or ValueError naming the problem (for pydantic validators)."""
    problem = text_problem(value, max_len)
    if problem == BAD_ENCODING:
        raise ValueError("contains NUL, a control character or invalid Unicode")
    if problem == TOO_LONG:
        raise ValueError(f"longer than {max_len} characters")
    return value


def money_problem(value: float | Decimal) -> str | None:
    """`out_of_range` unless `value`, rounded to cents, fits a Numeric(12, 2) column."""
    try:
        cents = Decimal(str(value)).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        return OUT_OF_RANGE
    if isinstance(value, float) and not math.isfinite(value):
        return OUT_OF_RANGE
    if not cents.is_finite() or abs(cents) > MONEY_LIMIT:
        return OUT_OF_RANGE
    return None


def date_problem(value: date) -> str | None:
    """`out_of_range` for dates outside [EARLIEST_DATE, LATEST_DATE]."""
    return None if EARLIEST_DATE <= value <= LATEST_DATE else OUT_OF_RANGE


def storable(text: str) -> str:
    """`text` as any database stores it: NUL (refused by PostgreSQL) becomes U+FFFD.

    For text kept as evidence, such as a quarantined row's raw line, not for values.
    """
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _has_lone_surrogate(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
