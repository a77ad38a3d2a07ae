"""Custom attributes in ingest: kinds declared or inferred, values typed, rows as JSON objects.

Everything here works on whole columns of a block (pandas and Arrow kernels): a customers
file with attributes loads at about the speed of one without.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from nextoffer.domain.attributes import AttributeKind, AttributeRole, AttributeSpec
from nextoffer.domain.limits import EARLIEST_DATE, FLOAT_LIMIT, LATEST_DATE

# Inference reads words only: a column of 0/1 is a number unless declared boolean.
BOOLEAN_WORDS = frozenset({"true", "false", "yes", "no", "y", "n", "t", "f"})
# Values of a boolean attribute: every spelling of the import format's booleans.
TRUE_TEXT = frozenset({"true", "t", "yes", "y", "1"})
FALSE_TEXT = frozenset({"false", "f", "no", "n", "0"})
CATEGORY_MAX_LENGTH = 200

_WHAT = {
    AttributeKind.NUMBER: "a number",
    AttributeKind.BOOLEAN: "true/false",
    AttributeKind.DATE: "a YYYY-MM-DD date",
}


@dataclass(frozen=True)
class Declared:
    """What a mapping says of an attribute; None leaves it to the registry or inference."""

    kind: AttributeKind | None = None
    role: AttributeRole | None = None


@dataclass(frozen=True)
class AttributePlan:
    """How a file's attribute columns are read: the specs stored, and what to register."""

    specs: tuple[AttributeSpec, ...]
    """Attributes stored from this file (not `ignore`), by name; frame columns of that name."""
    dropped: tuple[str, ...]
    """Columns of role `ignore`: read, never stored."""
    declared: tuple[AttributeSpec, ...]
    """Declared in the mapping: registered over whatever was there."""
    inferred: tuple[AttributeSpec, ...]
    """New to the registry and not declared: registered only if still absent."""


def infer_kind(text: pd.Series) -> AttributeKind:
    """The kind a column's non-empty values fit: boolean words, numbers, dates, else category."""
    values = text[text.str.strip() != ""].str.strip()
    if values.empty:
        return AttributeKind.CATEGORY
    if values.str.lower().isin(BOOLEAN_WORDS).all():
        return AttributeKind.BOOLEAN
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    if np.isfinite(numbers).all():
        return AttributeKind.NUMBER
    dates = pd.to_datetime(values, format="%Y-%m-%d", errors="coerce")
    if dates.notna().all():
        return AttributeKind.DATE
    return AttributeKind.CATEGORY


def plan_attributes(
    columns: Mapping[str, Declared],
    first_block: pd.DataFrame,
    registered: Mapping[str, AttributeSpec],
) -> AttributePlan:
    """Kind and role of each attribute column: declared, else registered, else inferred.

    The role defaults to `feature`. Inference looks at the file's first block only, once.
    """
    specs: list[AttributeSpec] = []
    dropped: list[str] = []
    declared: list[AttributeSpec] = []
    inferred: list[AttributeSpec] = []
    for name in sorted(columns):
        said = columns[name]
        known = registered.get(name)
        kind = said.kind or (known.kind if known else None)
        if kind is None:
            kind = infer_kind(first_block[name]) if name in first_block else AttributeKind.CATEGORY
        role = said.role or (known.role if known else AttributeRole.FEATURE)
        spec = AttributeSpec(name, kind, role)
        if said.kind is not None or said.role is not None:
            declared.append(spec)
        elif known is None:
            inferred.append(spec)
        if role is AttributeRole.IGNORE:
            dropped.append(name)
        else:
            specs.append(spec)
    return AttributePlan(tuple(specs), tuple(dropped), tuple(declared), tuple(inferred))


@dataclass(frozen=True)
class ParsedAttribute:
    """One attribute column of a block: each row's JSON value text (null: no value), bad rows."""

    spec: AttributeSpec
    values: pa.Array
    bad: np.ndarray
    code: str
    """The reason code of a bad value: `bad_type`, or `too_long` for a category."""
    problem: str
    """How a bad value fails: `is not a number`, `is longer than 200 characters`..."""
    outside: np.ndarray | None = None
    """Rows whose number or date is well formed but out of range (`out_of_range`, first)."""


def parse_attribute(spec: AttributeSpec, text: pd.Series) -> ParsedAttribute:
    """Type one column of text as `spec.kind`; values that do not fit are flagged bad."""
    stripped = text.str.strip()
    present = np.asarray(stripped != "")
    kind = spec.kind
    if kind is AttributeKind.NUMBER:
        numbers = pd.to_numeric(stripped.where(present, None), errors="coerce")
        floats = numbers.to_numpy(dtype=float, na_value=np.nan)
        outside = present & np.isfinite(floats) & (np.abs(floats) > FLOAT_LIMIT)
        good = np.isfinite(floats) & ~outside
        values = pa.array(np.where(good, floats, 0.0), pa.float64()).cast(pa.string())
        return _parsed(spec, values, present, good, f"is not {_WHAT[kind]}", outside=outside)
    if kind is AttributeKind.BOOLEAN:
        lowered = stripped.str.lower()
        truthy = np.asarray(lowered.isin(TRUE_TEXT))
        falsy = np.asarray(lowered.isin(FALSE_TEXT))
        values = pa.array(np.where(truthy, "true", "false"), pa.string())
        return _parsed(spec, values, present, truthy | falsy, f"is not {_WHAT[kind]}")
    if kind is AttributeKind.DATE:
        dates = pd.to_datetime(stripped.where(present, None), format="%Y-%m-%d", errors="coerce")
        within = (dates >= pd.Timestamp(EARLIEST_DATE)) & (dates <= pd.Timestamp(LATEST_DATE))
        outside = present & np.asarray(dates.notna() & ~within)
        good = np.asarray(dates.notna()) & ~outside
        values = pc.binary_join_element_wise('"', _text(stripped), '"', "")
        return _parsed(spec, values, present, good, f"is not {_WHAT[kind]}", outside=outside)
    good = np.asarray(stripped.str.len() <= CATEGORY_MAX_LENGTH)
    problem = f"is longer than {CATEGORY_MAX_LENGTH} characters"
    return _parsed(spec, _json_strings(stripped), present, good, problem, "too_long")


def _text(series: pd.Series) -> pa.Array:
    return pa.array(series.astype(object), pa.string())


def _parsed(
    spec: AttributeSpec,
    values: pa.Array,
    present: np.ndarray,
    good: np.ndarray,
    problem: str,
    code: str = "bad_type",
    outside: np.ndarray | None = None,
) -> ParsedAttribute:
    keep = present & good
    masked = pc.if_else(pa.array(keep), values, pa.scalar(None, pa.string()))
    return ParsedAttribute(spec, masked, present & ~good, code, problem, outside)


def _json_strings(text: pd.Series) -> pa.Array:
    """JSON string literals of `text`, escaped by Arrow kernels (json.dumps for rare controls)."""
    raw = _text(text)
    if pc.any(pc.match_substring_regex(raw, r"[\x00-\x1f]")).as_py():
        return pa.array([json.dumps(v, ensure_ascii=False) for v in text], pa.string())
    escaped = pc.replace_substring(raw, "\\", "\\\\")
    escaped = pc.replace_substring(escaped, '"', '\\"')
    return pc.binary_join_element_wise('"', escaped, '"', "")


def json_objects(parsed: Sequence[ParsedAttribute], rows: int) -> pd.Series:
    """Each row's attributes as one JSON object text, keys sorted, absent values left out.

    The text is the same for the same values, so reloading a file compares equal in the
    bulk upsert (SQLite compares the text; PostgreSQL's jsonb the value).
    """
    body = pa.array([""] * rows, pa.string())
    for item in sorted(parsed, key=lambda p: p.spec.name):
        pair = pc.binary_join_element_wise(f',"{item.spec.name}":', item.values, "")
        body = pc.binary_join_element_wise(body, pair.fill_null(""), "")
    objects = pc.binary_join_element_wise("{", pc.utf8_slice_codeunits(body, 1), "}", "")
    return pd.Series(objects.to_pylist(), dtype=object)
