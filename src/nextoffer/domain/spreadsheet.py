"""Cells of CSV files people open in spreadsheets, neutralised against formula injection."""

from __future__ import annotations

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""A cell starting with one of these is a formula (or can become one) to a spreadsheet."""


def safe_cell(text: str) -> str:
    """`text` with a leading apostrophe when a spreadsheet would run it (OWASP's advice).

    The apostrophe shows the cell as text; for the line and reason columns nothing changes,
    only untrusted text (a quarantined row's raw line) ever starts that way.
    """
    return "'" + text if text.startswith(FORMULA_START) else text
