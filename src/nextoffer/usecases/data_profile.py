"""The data-quality profile: every table's columns, custom attributes, quarantine, references.

One builder for `nextoffer data profile` (Markdown) and the console's /data/profile page
(the same numbers in the console's tables).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from nextoffer.store import Engine
from nextoffer.store.reads import profile as reads
from nextoffer.store.reads.profile import (
    ColumnProfile,
    QuarantineCount,
    ReferenceShare,
    TableProfile,
)

REFERENCING = ("subscriptions", "transactions", "events", "exposures")
"""Entities whose rows name a customer and a product that must be known."""


@dataclass(frozen=True)
class DataProfile:
    """What the data holds now, column by column, and what ingest refused."""

    generated_at: datetime
    tables: list[TableProfile]
    attributes: list[ColumnProfile]
    quarantine: list[QuarantineCount]
    references: list[ReferenceShare]

    @property
    def customers(self) -> int:
        """Rows of the customers table (the denominator of attribute emptiness)."""
        return next((t.rows for t in self.tables if t.name == "customers"), 0)


def data_profile(engine: Engine, now: datetime | None = None) -> DataProfile:
    """Profile every data table, the custom attributes, the quarantine and the references."""
    tables = reads.data_tables_profile(engine)
    customers = next(t.rows for t in tables if t.name == "customers")
    return DataProfile(
        generated_at=now or datetime.now(UTC),
        tables=tables,
        attributes=reads.attributes_profile(engine, customers),
        quarantine=reads.quarantine_counts(engine),
        references=reads.reference_shares(engine, REFERENCING),
    )


def share(part: int, whole: int) -> str:
    """`part` of `whole` as a percentage with one decimal ("—" of nothing)."""
    return f"{100 * part / whole:.1f} %" if whole else "—"


def top_text(column: ColumnProfile) -> str:
    """The top values as `value (count)`, comma-separated."""
    return ", ".join(f"{value or '(empty)'} ({count:,})" for value, count in column.top)


def _cell(text: str) -> str:
    # A value may hold a pipe or a line break; either would break the Markdown table.
    return text.replace("|", "\\|").replace("\n", " ")


def _column_rows(columns: list[ColumnProfile], rows: int, with_role: bool) -> list[str]:
    head = "| column | kind | empty | distinct | min | max | top values |"
    rule = "|---|---|---|---|---|---|---|"
    if with_role:
        head = "| attribute | kind | role | empty | distinct | min | max | top values |"
        rule = "|---|---|---|---|---|---|---|---|"
    lines = [head, rule]
    for c in columns:
        distinct = "unique (key)" if c.distinct is None else f"{c.distinct:,}"
        cells = [f"`{c.name}`", c.kind]
        if with_role:
            cells.append(c.role or "")
        cells += [
            share(c.empty, rows),
            distinct,
            _cell(c.minimum or ""),
            _cell(c.maximum or ""),
            _cell(top_text(c)),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def to_markdown(profile: DataProfile) -> str:
    """The profile as a Markdown document."""
    stamp = profile.generated_at.strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Data profile",
        "",
        f"Generated {stamp}. *Empty*: share of rows without a value (NULL or empty text).",
    ]
    for table in profile.tables:
        lines += ["", f"## {table.name} ({table.rows:,} rows)", ""]
        lines += _column_rows(table.columns, table.rows, with_role=False)
    lines += ["", "## Custom attributes", ""]
    if profile.attributes:
        lines += _column_rows(profile.attributes, profile.customers, with_role=True)
    else:
        lines.append("None: customers files have had no columns beyond the standard ones.")
    lines += ["", "## Quarantine", ""]
    if profile.quarantine:
        lines += ["| entity | reason | rows | example |", "|---|---|---|---|"]
        lines += [
            f"| {q.entity} | `{q.code}` | {q.rows:,} | {_cell(q.example)} |"
            for q in profile.quarantine
        ]
    else:
        lines.append("No quarantined rows.")
    lines += [
        "",
        "## References",
        "",
        "Rows naming an unknown customer or product are never stored; these shares count "
        "them among the rows ingest read (the ledger), by the quarantine's first reason.",
        "",
        "| entity | rows read | unknown customer | unknown product | known |",
        "|---|---|---|---|---|",
    ]
    for r in profile.references:
        known = "—" if r.known_share is None else f"{100 * r.known_share:.1f} %"
        lines.append(
            f"| {r.entity} | {r.rows_read:,} | {r.unknown_customer:,} | "
            f"{r.unknown_product:,} | {known} |"
        )
    return "\n".join(lines) + "\n"
