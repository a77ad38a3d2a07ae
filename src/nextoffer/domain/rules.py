"""Product rules as lookup tables: required products and attributes, exclusion groups, upgrades.

Each rule is built once from the catalogue's columns and applied to a block of customers
with one small matrix product or a column lookup, so eligibility stays vectorised.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

import numpy as np
import numpy.typing as npt

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
Float32Array = npt.NDArray[np.float32]
AnyArray = npt.NDArray[Any]

Condition = tuple[str, str]
"""One `name=value` term of `requires_attribute`: the attribute's name and the wanted value."""

_TRUE_WORDS: Final = frozenset({"true", "yes", "t", "y"})
_FALSE_WORDS: Final = frozenset({"false", "no", "f", "n"})
# How a missing value reads once a text column is turned into strings (None, NaN, NaT).
_MISSING_TEXT: Final = frozenset({"", "none", "nan", "nat", "<na>"})
_EPOCH: Final = date(1970, 1, 1)


def parse_conditions(value: Any) -> tuple[Condition, ...]:
    """`requires_attribute` as (name, value) pairs: `name=value` terms, `|`-separated.

    A mapping {name: value} is accepted too. Names are matched case-insensitively (the
    attribute schema's names are snake_case); an empty value matches nobody.
    """
    if value is None:
        return ()
    if isinstance(value, Mapping):
        items: Iterable[Any] = (f"{k}={v}" for k, v in value.items())
    elif isinstance(value, str):
        items = value.split("|")
    elif isinstance(value, Iterable):
        items = value
    else:
        raise ValueError(f"not a |-separated list of name=value: {value!r}")
    out: list[Condition] = []
    for raw in items:
        if isinstance(raw, tuple) and len(raw) == 2:
            raw = f"{raw[0]}={raw[1]}"
        term = str(raw).strip()
        if not term:
            continue
        name, sep, wanted = term.partition("=")
        name = name.strip().lower()
        if not sep or not name:
            raise ValueError(f"requires_attribute term {term!r} is not name=value")
        out.append((name, wanted.strip()))
    return tuple(dict.fromkeys(out))


def _number(text: str) -> float | None:
    """A boolean word (true/yes → 1, false/no → 0) or a finite number; None otherwise."""
    low = text.strip().lower()
    if low in _TRUE_WORDS:
        return 1.0
    if low in _FALSE_WORDS:
        return 0.0
    try:
        number = float(low)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def wanted_number(text: str) -> float | None:
    """The value a numeric attribute column must equal: a number, a boolean, or a date.

    Boolean attributes are 1.0/0.0 and dates are days since 1970-01-01 in the attribute
    frame, so `true`, `1`, `2024-05-01` all compare as numbers. None: nothing can match.
    """
    number = _number(text)
    if number is not None:
        return number
    try:
        return float((date.fromisoformat(text.strip()) - _EPOCH).days)
    except ValueError:
        return None


def canonical_text(text: str) -> str:
    """A text value as compared: booleans and numbers as one number form, else lowercase."""
    number = _number(text)
    return repr(number) if number is not None else text.strip().lower()


def attribute_matches(column: npt.ArrayLike, wanted: str) -> BoolArray:
    """Which customers' attribute value equals `wanted` (a missing value never does).

    Numeric columns (numbers, booleans as 1.0/0.0, dates as days) compare numerically;
    text columns (categories) compare as case-insensitive text, booleans and numbers
    normalised (`Yes` = `true` = `1`).
    """
    values = np.asarray(column).reshape(-1)
    if values.dtype.kind in "biuf":
        target = wanted_number(wanted)
        if target is None:
            return np.zeros(values.shape[0], np.bool_)
        matched: BoolArray = values.astype(np.float64) == target  # NaN never equals
        return matched
    # Text: decide once per distinct value (a few categories), then look the rows up.
    uniques, inverse = np.unique(values.astype(str), return_inverse=True)
    target_text = canonical_text(wanted)
    lut = np.array(
        [
            u.strip().lower() not in _MISSING_TEXT and canonical_text(u) == target_text
            for u in uniques.tolist()
        ],
        dtype=np.bool_,
    )
    found: BoolArray = lut[inverse.reshape(-1)] if uniques.size else lut
    return found


def _needs_matrix(
    lists: Sequence[frozenset[str]], columns: IntArray, index: Mapping[str, int], n: int
) -> Float32Array:
    """n_products × len(columns): 1 where the column's product lists that product.

    Ids the catalogue does not have are left out: nobody holds them.
    """
    needs = np.zeros((n, columns.shape[0]), np.float32)
    for c, j in enumerate(columns.tolist()):
        for pid in lists[j]:
            i = index.get(pid)
            if i is not None:
                needs[i, c] = 1.0
    return needs


@dataclass(frozen=True, eq=False)
class HeldAnyRule:
    """Products that apply when the customer holds any product of their list.

    `columns` are the products with a non-empty list; `needs` (products × columns) marks
    the listed products, so `held @ needs > 0` answers every customer and product at once.
    """

    columns: IntArray
    needs: Float32Array

    @classmethod
    def build(
        cls, lists: Sequence[frozenset[str]], index: Mapping[str, int], n: int
    ) -> HeldAnyRule:
        """The table for one column of product-id lists (empty list = no rule)."""
        columns = np.array([j for j, s in enumerate(lists) if s], dtype=np.int64)
        return cls(columns, _needs_matrix(lists, columns, index, n))

    @property
    def active(self) -> bool:
        """Whether any product has the rule."""
        return bool(self.columns.size)

    def holds_any(self, held_f: Float32Array) -> BoolArray:
        """Customers × `columns`: the customer holds one of that product's listed products."""
        found: BoolArray = (held_f @ self.needs) > 0
        return found


@dataclass(frozen=True, eq=False)
class ExclusionRule:
    """Exclusion groups: holding one member blocks the others, except along an upgrade path.

    `columns` are the products in a group; `members` (products × groups) is each product's
    group, `group_of` the group of each column, `upgrades` (products × columns) the
    `upgrades_from` products that re-open a column to the customers who hold them.
    """

    groups: tuple[str, ...]
    columns: IntArray
    members: Float32Array
    group_of: IntArray
    upgrades: Float32Array

    @classmethod
    def build(
        cls,
        groups: Sequence[str | None],
        upgrades_from: Sequence[frozenset[str]],
        index: Mapping[str, int],
    ) -> ExclusionRule:
        """The table for the `exclusion_group` and `upgrades_from` columns."""
        n = len(groups)
        names = tuple(sorted({g for g in groups if g}))
        code = {g: i for i, g in enumerate(names)}
        columns = np.array([j for j, g in enumerate(groups) if g], dtype=np.int64)
        members = np.zeros((n, len(names)), np.float32)
        for j, g in enumerate(groups):
            if g:
                members[j, code[g]] = 1.0
        group_of = np.array([code[str(groups[j])] for j in columns.tolist()], dtype=np.int64)
        upgrades = _needs_matrix(upgrades_from, columns, index, n)
        return cls(names, columns, members, group_of, upgrades)

    @property
    def active(self) -> bool:
        """Whether any product is in a group."""
        return bool(self.columns.size)

    def allowed(self, held: BoolArray, held_f: Float32Array) -> BoolArray:
        """Customers × `columns`: no other member of the group held, or an upgrade path."""
        in_group = (held_f @ self.members)[:, self.group_of]
        others = in_group - held_f[:, self.columns] > 0
        if not others.any():
            return ~others
        upgrade = (held_f @ self.upgrades) > 0
        ok: BoolArray = ~others | upgrade
        return ok


@dataclass(frozen=True, eq=False)
class AttributeRule:
    """`requires_attribute`: every listed `name=value` must hold for the customer.

    `conditions` are the distinct terms of the catalogue, `columns` the products with a
    rule, `needs` (conditions × columns) which terms each of those products lists.
    """

    conditions: tuple[Condition, ...]
    columns: IntArray
    needs: Float32Array

    @classmethod
    def build(cls, rules: Sequence[tuple[Condition, ...]]) -> AttributeRule:
        """The table for the `requires_attribute` column."""
        conditions = tuple(dict.fromkeys(c for terms in rules for c in terms))
        code = {c: i for i, c in enumerate(conditions)}
        columns = np.array([j for j, terms in enumerate(rules) if terms], dtype=np.int64)
        needs = np.zeros((len(conditions), columns.shape[0]), np.float32)
        for c, j in enumerate(columns.tolist()):
            for term in rules[j]:
                needs[code[term], c] = 1.0
        return cls(conditions, columns, needs)

    @property
    def active(self) -> bool:
        """Whether any product has the rule."""
        return bool(self.columns.size)

    def passes(self, attributes: Mapping[str, AnyArray] | None, n_customers: int) -> BoolArray:
        """Customers × `columns`: every term of the product met (a missing attribute fails)."""
        met = np.zeros((n_customers, len(self.conditions)), np.bool_)
        for c, (name, wanted) in enumerate(self.conditions):
            column = None if attributes is None else attributes.get(name)
            if column is not None:
                met[:, c] = attribute_matches(column, wanted)
        unmet = (~met).astype(np.float32) @ self.needs
        ok: BoolArray = unmet == 0
        return ok
