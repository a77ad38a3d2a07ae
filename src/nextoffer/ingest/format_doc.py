"""Renders docs/data-format.md from the entity definitions, so the doc cannot drift from code."""

from __future__ import annotations

from nextoffer.ingest.entities import ENTITIES, Column, Kind

KIND_TEXT = {
    Kind.ID: "id (text ≤ 64, letters/digits/`._:@/+-`, no spaces)",
    Kind.TEXT: "text",
    Kind.INT: "integer",
    Kind.FLOAT: "number",
    Kind.MONEY: "money (number, rounded to cents)",
    Kind.BOOL: "boolean (`true/false`, `yes/no`, `1/0`, any case)",
    Kind.DATE: "date `YYYY-MM-DD`",
    Kind.TIMESTAMP: "timestamp ISO-8601 (no offset = UTC)",
    Kind.ENUM: "one of",
    Kind.ENUM_LIST: "`|`-separated list of",
    Kind.ID_LIST: "`|`-separated list of ids",
}

REASONS = (
    (
        "malformed_row",
        "the line has more or fewer fields than the header, or a quote opened on it does not "
        "close within 1 MiB (only that line is lost: reading goes on at the next one)",
    ),
    (
        "bad_encoding",
        "the line is not valid UTF-8 or holds a carriage return that does not end it, or a "
        "value holds NUL, a control character or a line break",
    ),
    ("missing_id", "a required id is empty"),
    ("missing_value", "another required column is empty"),
    ("bad_id", "an id has spaces or symbols outside `._:@/+-`"),
    (
        "too_long",
        "text longer than the column allows, or a line longer than 1 MiB (read no further; "
        "its first 4 KiB are kept as raw text)",
    ),
    ("bad_type", "a number column, or a typed custom attribute, holds something else"),
    ("bad_integer", "an integer column holds a fraction"),
    ("not_finite", "a number is NaN or infinite"),
    ("negative_amount", "money below zero"),
    (
        "out_of_range",
        "a number below the column's minimum or beyond what it holds (money ±9,999,999,999.99 "
        "after rounding to cents, integers ±2,147,483,647, other numbers ±10¹⁵), or a date "
        "or timestamp before 1900-01-01",
    ),
    ("bad_date", "not a `YYYY-MM-DD` date"),
    ("bad_timestamp", "not an ISO-8601 timestamp"),
    ("future_date", "a date after today (end_date excepted)"),
    ("future_timestamp", "a timestamp after now (plus NEXTOFFER_INGEST_CLOCK_SKEW_S)"),
    ("bad_boolean", "not one of the boolean spellings"),
    ("bad_enum", "a value outside the column's vocabulary"),
    ("bad_rule", "products: `requires_attribute` not in the form `name=value|name=value`"),
    ("unknown_product", "a product id that is neither stored nor in this load"),
    ("unknown_customer", "a customer id that is neither stored nor in this load"),
    ("duplicate", "the natural key appeared earlier in the same file (the first one is kept)"),
    ("margin_exceeds_price", "products: margin above price"),
    ("end_before_start", "subscriptions: end_date before start_date"),
    ("inconsistent_churn", "churn_labels: churn_date without churned=true, or before as_of"),
)

INTRO = """# Import format

nextoffer loads nine kinds of files. This page is generated from
`src/nextoffer/ingest/entities.py` (`python -m nextoffer.ingest.format_doc`); a test fails
when the two disagree.

## Files

- One folder (or one file) per `nextoffer ingest PATH`. A file belongs to an entity by its
  name: `transactions.csv`, `transactions-2026-11.csv.gz`, `transactions_part1.parquet`.
  Files load in dependency order: products, customers, subscriptions, transactions,
  events, churn_labels, exposures, consent, do_not_call; within an entity, by file name.
- CSV: UTF-8 (a BOM is allowed), comma-separated, one header row naming the columns (any
  order; optional columns may be absent; unknown columns are ignored, except in customers
  files, where they are custom attributes), `"` quoting, `\\n` or `\\r\\n` line ends,
  optionally gzip-compressed (`.csv.gz`). Parquet: the same column names; any Arrow types
  that print as the text forms below.
- An export in another shape (other column names and spellings, one Yes/No column per
  product) is read through a mapping file: see *Mapping an operator's export* at the end.
- Ids are strings, compared exactly (`C001` and `c001` differ). An empty cell is "no
  value". Timestamps are ISO-8601 (`2026-03-04T12:30:00Z`, `2026-03-04 12:30:00+02:00`);
  without an offset they are UTC.
- Loading is an upsert on each entity's natural key: loading the same file again changes
  nothing; a later file with the same key and new values updates the row.

## Rejected rows

A row that fails a rule is not loaded. It goes to the `quarantine` table and to
`<NEXTOFFER_VAR_DIR>/quarantine/<entity>.<file>.<hash>.csv` with its line number, its raw
text and the first reason found, as `code: detail`. Raw text keeps undecodable bytes and
NUL as U+FFFD; in the file, a cell starting with `=`, `+`, `-`, `@`, a tab or a carriage
return gets a leading `'`, so a spreadsheet shows it as text instead of running it:

| code | meaning |
|---|---|
"""


def _type(column: Column) -> str:
    text = KIND_TEXT[column.kind]
    if column.kind in (Kind.ENUM, Kind.ENUM_LIST):
        text += " " + ", ".join(f"`{c}`" for c in column.choices)
    if column.kind is Kind.TEXT:
        text += f" ≤ {column.max_length}"
    if column.min_value is not None:
        text += f", ≥ {column.min_value:g}"
    return text


def render_markdown() -> str:
    """The whole of docs/data-format.md."""
    from nextoffer.ingest.format_guide import ATTRIBUTES, MAPPING

    lines = [INTRO.rstrip("\n")]
    lines += [f"| `{code}` | {meaning} |" for code, meaning in REASONS]
    for entity in ENTITIES:
        lines += ["", f"## {entity.name}", "", entity.doc, ""]
        lines.append(f"Natural key: {', '.join(f'`{k}`' for k in entity.key)}.")
        refs = [c for c in entity.columns if c.references]
        if refs:
            lines.append(
                "References: "
                + ", ".join(f"`{c.name}` → {c.references}" for c in refs)
                + " (must be stored already or loaded earlier in the same run)."
            )
        lines += ["", "| column | required | type | default | meaning |", "|---|---|---|---|---|"]
        for c in entity.columns:
            default = "" if c.default is None else f"`{c.default}`" if c.default else "empty"
            lines.append(
                f"| `{c.name}` | {'yes' if c.required else ''} | {_type(c)} | {default} | {c.doc} |"
            )
    lines += ["", ATTRIBUTES.strip("\n"), "", MAPPING.strip("\n")]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_markdown(), end="")
