"""One table cell as the churn model's tree encoding reads it, without pandas.

`models.tabular` encodes whole columns with pandas; the serving process encodes one
customer's feature row (a plain mapping) with these, to the same floats.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

# Spellings accepted in boolean-like columns and in labels, compared stripped and lower-cased.
TRUE_WORDS = frozenset({"yes", "y", "true", "t", "1"})
FALSE_WORDS = frozenset({"no", "n", "false", "f", "0"})
BOOL_WORDS = TRUE_WORDS | FALSE_WORDS
MISSING_LEVEL = "missing"
OTHER_LEVEL = "other"
NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_NUMBER_TEXT = re.compile(NUMBER)


def plain(value: Any) -> Any:
    """A cell as a JSON-friendly Python value: numpy scalars unwrapped, NaN → None."""
    if isinstance(value, np.generic):
        value = value.item()
    # pandas' missing markers (pd.NA, pd.NaT), recognised without importing pandas.
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _text(value: Any) -> str | None:
    """Stripped text of a cell, None when blank (None, NaN or whitespace)."""
    value = plain(value)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _is_number(value: Any) -> bool:
    return isinstance(value, bool | int | float | np.bool_ | np.integer | np.floating)


def numeric_cell(value: Any) -> float:
    """Float value; blanks and text that is not a plain decimal number → NaN."""
    if value is None:
        return math.nan
    if _is_number(value):
        return float(value)
    text = _text(value)
    return float(text) if text is not None and _NUMBER_TEXT.fullmatch(text) else math.nan


def boolean_cell(value: Any) -> float:
    """1.0/0.0 for a boolean-like cell; anything else (blank or unexpected) → NaN."""
    if value is None:
        return math.nan
    if _is_number(value):
        number = float(value)
        return number if number in (0.0, 1.0) else math.nan
    text = _text(value)
    if text is None:
        return math.nan
    lowered = text.lower()
    return 1.0 if lowered in TRUE_WORDS else 0.0 if lowered in FALSE_WORDS else math.nan


def category_code(value: Any, codes: dict[str, int], other: int | None) -> float:
    """The level's position: blank → "missing", unseen → "other" (NaN without one)."""
    text = _text(value)
    code = codes.get(MISSING_LEVEL if text is None else text)
    if code is None:
        code = other
    return math.nan if code is None else float(code)
