"""The product catalogue as column arrays: eligibility lists, categories, reference margin."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from nextoffer.domain.rules import (
    AttributeRule,
    Condition,
    ExclusionRule,
    HeldAnyRule,
    parse_conditions,
)
from nextoffer.domain.vocabulary import ProductCategory

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
AnyArray = npt.NDArray[Any]

CATEGORIES: Final[tuple[str, ...]] = tuple(c.value for c in ProductCategory)
"""Column order of `Customers.held_categories` (the import format's category vocabulary)."""

CATEGORY_LABELS: Final[Mapping[str, str]] = {
    ProductCategory.MOBILE_PLAN.value: "mobile plan",
    ProductCategory.BROADBAND_PLAN.value: "broadband",
    ProductCategory.ADDON.value: "add-ons",
    ProductCategory.DEVICE.value: "device",
    ProductCategory.BUNDLE.value: "bundle",
    ProductCategory.FIXED_VOICE.value: "landline",
    ProductCategory.TV.value: "TV",
    ProductCategory.SECURITY.value: "security service",
    ProductCategory.OTHER.value: "service",
}

# Above this many distinct values a dimension's codes come from np.unique, not == per value.
_EQ_LOOKUP_MAX_VALUES: Final = 32

_TRUE = frozenset({"true", "yes", "1", "t", "y"})
_FALSE = frozenset({"false", "no", "0", "f", "n", ""})


def _as_bool(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return default if text == "" else False
    raise ValueError(f"not a boolean: {value!r}")


def _as_set(value: Any) -> frozenset[str]:
    # The products table stores these lists pipe-separated; empty means "no restriction".
    if value is None:
        return frozenset()
    if isinstance(value, str):
        parts: Iterable[Any] = value.split("|")
    elif isinstance(value, Iterable):
        parts = value
    else:
        raise ValueError(f"not a |-separated list: {value!r}")
    return frozenset(s for s in (str(p).strip() for p in parts) if s)


def _as_optional(value: Any) -> str | None:
    text = "" if value is None else str(value).strip()
    return text or None


def _as_float(value: Any, default: float) -> float:
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if isinstance(value, Decimal):
        return float(value)
    return float(value)


@dataclass(frozen=True, eq=False)
class SetRule:
    """One "value must be in the product's list (empty = any)" rule as a lookup table.

    `allowed` has one row per value mentioned by some product and a last row for every other
    value, which only unrestricted products allow.
    """

    values: tuple[str, ...]
    lookup: Mapping[str, int]
    allowed: BoolArray

    @classmethod
    def build(cls, sets: Sequence[frozenset[str]]) -> SetRule:
        """The table for one column of product lists."""
        values = tuple(sorted(frozenset[str]().union(*sets)))
        allowed = np.array(
            [[not s or v in s for s in sets] for v in values] + [[not s for s in sets]],
            dtype=np.bool_,
        ).reshape(len(values) + 1, len(sets))
        return cls(values, {v: i for i, v in enumerate(values)}, allowed)

    def codes(self, column: AnyArray) -> IntArray:
        """Row of `allowed` for each value of a customer column."""
        codes = np.full(column.shape[0], len(self.values), dtype=np.int64)
        if len(self.values) <= _EQ_LOOKUP_MAX_VALUES:
            for i, value in enumerate(self.values):
                codes[column == value] = i
            return codes
        uniques, inverse = np.unique(column.astype(str), return_inverse=True)
        lut = np.array([self.lookup.get(str(u), len(self.values)) for u in uniques], np.int64)
        return lut[inverse.reshape(-1)]

    def row(self, value: str) -> BoolArray:
        """Which products allow one value."""
        row: BoolArray = self.allowed[self.lookup.get(value, len(self.values))]
        return row


@dataclass(frozen=True, eq=False)
class Catalogue:
    """The product catalogue as column arrays over products, built once from the products table.

    Build it from the whole table, inactive products included: customers still hold them,
    and what they hold decides `requires_category`, `requires_products` and exclusion
    groups. Money is in the table's currency units. The product rules (`requires_products`,
    `requires_attribute`, `exclusion_group`, `upgrades_from`) may be left out: no rules.
    """

    product_ids: AnyArray
    names: AnyArray
    categories: AnyArray
    price: FloatArray
    margin: FloatArray
    contract_types: list[frozenset[str]]
    regions: list[frozenset[str]]
    channels: list[frozenset[str]]
    min_tenure_months: FloatArray
    requires_category: list[str | None]
    is_retention: BoolArray
    active: BoolArray
    requires_products: list[frozenset[str]] = field(default_factory=list)
    """Per product: the customer must hold ANY of these products (empty = no rule)."""
    requires_attribute: list[tuple[Condition, ...]] = field(default_factory=list)
    """Per product: (attribute, value) pairs that must ALL match the customer (empty = none)."""
    exclusion_group: list[str | None] = field(default_factory=list)
    """Per product: its group; holding another member blocks it (None = no group)."""
    upgrades_from: list[frozenset[str]] = field(default_factory=list)
    """Per product: holders of these may still be offered it despite its group (upgrade path)."""
    _index: dict[str, int] = field(init=False, repr=False)
    category_code: IntArray = field(init=False, repr=False)
    """Position of each product's category in `CATEGORIES`."""
    requires_code: IntArray = field(init=False, repr=False)
    """Position of the required category in `CATEGORIES`; -1 when nothing is required."""
    reference_margin: float = field(init=False)
    """Median margin of the active products with a positive margin (1.0 if there are none)."""
    contract_rule: SetRule = field(init=False, repr=False)
    region_rule: SetRule = field(init=False, repr=False)
    channel_rule: SetRule = field(init=False, repr=False)
    requires_products_rule: HeldAnyRule = field(init=False, repr=False)
    attribute_rule: AttributeRule = field(init=False, repr=False)
    exclusion_rule: ExclusionRule = field(init=False, repr=False)
    upgrade_rule: HeldAnyRule = field(init=False, repr=False)
    """Which customers hold one of a product's `upgrades_from` (for the upgrade reason)."""

    def __post_init__(self) -> None:
        n = len(self.product_ids)
        put = object.__setattr__  # frozen: derived columns are set once, here
        # The rule columns are optional: left out (empty), they mean "no rule" everywhere.
        for name, empty in (
            ("requires_products", frozenset()),
            ("requires_attribute", ()),
            ("exclusion_group", None),
            ("upgrades_from", frozenset()),
        ):
            if not len(getattr(self, name)):
                put(self, name, [empty] * n)
        put(self, "product_ids", np.asarray(self.product_ids, dtype=str))
        put(self, "names", np.asarray(self.names, dtype=str))
        put(self, "categories", np.asarray(self.categories, dtype=str))
        for name in ("price", "margin", "min_tenure_months"):
            put(self, name, np.asarray(getattr(self, name), dtype=np.float64))
        for name in ("is_retention", "active"):
            put(self, name, np.asarray(getattr(self, name), dtype=np.bool_))
        columns = (
            self.names,
            self.categories,
            self.price,
            self.margin,
            self.contract_types,
            self.regions,
            self.channels,
            self.min_tenure_months,
            self.requires_category,
            self.is_retention,
            self.active,
            self.requires_products,
            self.requires_attribute,
            self.exclusion_group,
            self.upgrades_from,
        )
        if any(len(c) != n for c in columns) or self.product_ids.ndim != 1:
            raise ValueError("every catalogue column must have one value per product")
        index = {str(pid): i for i, pid in enumerate(self.product_ids)}
        if len(index) != n:
            raise ValueError("duplicate product_id in the catalogue")
        for arr, what in ((self.price, "price"), (self.margin, "margin")):
            if not np.all(np.isfinite(arr) & (arr >= 0)):
                raise ValueError(f"every {what} must be a finite number >= 0")
        unknown = {str(c) for c in self.categories} | {r for r in self.requires_category if r}
        unknown -= set(CATEGORIES)
        if unknown:
            raise ValueError(f"unknown product categories: {sorted(unknown)}")
        put(self, "_index", index)
        codes = [CATEGORIES.index(str(c)) for c in self.categories]
        put(self, "category_code", np.array(codes, dtype=np.int64).reshape(n))
        requires = [CATEGORIES.index(r) if r else -1 for r in self.requires_category]
        put(self, "requires_code", np.array(requires, dtype=np.int64).reshape(n))
        positive = self.margin[self.active & (self.margin > 0)]
        put(self, "reference_margin", float(np.median(positive)) if positive.size else 1.0)
        put(self, "contract_rule", SetRule.build(self.contract_types))
        put(self, "region_rule", SetRule.build(self.regions))
        put(self, "channel_rule", SetRule.build(self.channels))
        put(self, "requires_products_rule", HeldAnyRule.build(self.requires_products, index, n))
        put(self, "attribute_rule", AttributeRule.build(self.requires_attribute))
        put(
            self,
            "exclusion_rule",
            ExclusionRule.build(self.exclusion_group, self.upgrades_from, index),
        )
        put(self, "upgrade_rule", HeldAnyRule.build(self.upgrades_from, index, n))

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]]) -> Catalogue:
        """Build from rows keyed by the products table's column names.

        Values may be typed (Decimal, bool, None) as read from the database or text as read
        from the import file; eligibility lists are `|`-separated, empty meaning any.
        `requires_attribute` is `name=value` terms, `|`-separated; a missing rule column
        means no rule.
        """
        return cls(
            product_ids=np.array([str(r["product_id"]) for r in records], dtype=str),
            names=np.array([str(r.get("name") or r["product_id"]) for r in records], dtype=str),
            categories=np.array([str(r["category"]) for r in records], dtype=str),
            price=np.array([_as_float(r.get("price"), 0.0) for r in records], np.float64),
            margin=np.array([_as_float(r.get("margin"), 0.0) for r in records], np.float64),
            contract_types=[_as_set(r.get("contract_types")) for r in records],
            regions=[_as_set(r.get("regions")) for r in records],
            channels=[_as_set(r.get("channels")) for r in records],
            min_tenure_months=np.array(
                [_as_float(r.get("min_tenure_months"), 0.0) for r in records], np.float64
            ),
            requires_category=[_as_optional(r.get("requires_category")) for r in records],
            is_retention=np.array(
                [_as_bool(r.get("is_retention_offer"), False) for r in records], np.bool_
            ),
            active=np.array([_as_bool(r.get("active"), True) for r in records], np.bool_),
            requires_products=[_as_set(r.get("requires_products")) for r in records],
            requires_attribute=[parse_conditions(r.get("requires_attribute")) for r in records],
            exclusion_group=[_as_optional(r.get("exclusion_group")) for r in records],
            upgrades_from=[_as_set(r.get("upgrades_from")) for r in records],
        )

    @property
    def n_products(self) -> int:
        """Number of products (columns of every customers × products matrix)."""
        return int(self.product_ids.shape[0])

    def index(self, product_id: str) -> int:
        """Column of a product; KeyError when the catalogue does not have it."""
        try:
            return self._index[product_id]
        except KeyError:
            raise KeyError(f"unknown product_id {product_id!r}") from None

    def holdings(self, product_ids: Iterable[str]) -> BoolArray:
        """A boolean row over products, true for the given ids (one customer's `held`)."""
        row = np.zeros(self.n_products, dtype=np.bool_)
        for pid in product_ids:
            row[self.index(pid)] = True
        return row

    def complement_label(self, j: int) -> str:
        """What product j complements, for its reason: its required category or products."""
        required = self.requires_category[j]
        if required:
            return CATEGORY_LABELS.get(required, required)
        return self._products_label(self.requires_products[j])

    def upgrade_label(self, j: int) -> str:
        """What product j upgrades, for its reason: its `upgrades_from` products."""
        return self._products_label(self.upgrades_from[j])

    def _products_label(self, product_ids: frozenset[str]) -> str:
        # One product by name; several by their shared category ("your broadband"), since
        # the reason is the same for every customer whichever of them they hold.
        known = sorted(self._index[p] for p in product_ids if p in self._index)
        if len(known) == 1:
            return str(self.names[known[0]])
        categories = {str(self.categories[i]) for i in known}
        if len(categories) == 1:
            category = categories.pop()
            return CATEGORY_LABELS.get(category, category)
        return "current products"

    def channel_allowed(self, channel: str | None) -> BoolArray:
        """Which products may be offered in a channel; None means any channel (no filter)."""
        if channel is None:
            return np.ones(self.n_products, dtype=np.bool_)
        return self.channel_rule.row(channel)
