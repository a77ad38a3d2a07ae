"""Business arbitration: turn per-product propensities into the next-best offers shown."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import numpy as np
import numpy.typing as npt

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
}

HIGH_INTEREST_SHARE: Final = 0.10
"""An offer is "high predicted interest" when in the top 10 % of the customer's propensities."""

MAX_REASONS: Final = 3

# Rows are processed in blocks of about this many cells: temporaries stay in cache-sized
# chunks and memory stays flat for 1 M customers, while one customer is simply a block of 1.
_BLOCK_CELLS: Final = 1 << 18
# Up to this many products a stable full sort per row beats partition + sort (measured:
# 29 vs 44 ns per cell at 40 products, 80 vs 16 ns at 2 000); both give identical results.
_FULL_SORT_MAX_PRODUCTS: Final = 64
# Above this many distinct values a dimension's codes come from np.unique, not == per value.
_EQ_LOOKUP_MAX_VALUES: Final = 32

_TRUE = frozenset({"true", "yes", "1", "t", "y"})
_FALSE = frozenset({"false", "no", "0", "f", "n", ""})

# Reason flags, one bit each, stored per offer; the strings are built only when asked for.
_R_RETENTION: Final = 1
_R_INTEREST: Final = 2
_R_VALUE: Final = 4
_R_COMPLEMENT: Final = 8
_FLAG_SPACE: Final = 16
# reason_table numbers its keys with a bincount up to this key space, else with np.unique.
_DENSE_KEY_SPACE: Final = 1 << 22


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
class _SetRule:
    """One "value must be in the product's list (empty = any)" rule as a lookup table.

    `allowed` has one row per value mentioned by some product and a last row for every other
    value, which only unrestricted products allow.
    """

    values: tuple[str, ...]
    lookup: Mapping[str, int]
    allowed: BoolArray

    @classmethod
    def build(cls, sets: Sequence[frozenset[str]]) -> _SetRule:
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
    and what they hold decides `requires_category`. Money is in the table's currency units.
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
    _index: dict[str, int] = field(init=False, repr=False)
    category_code: IntArray = field(init=False, repr=False)
    """Position of each product's category in `CATEGORIES`."""
    requires_code: IntArray = field(init=False, repr=False)
    """Position of the required category in `CATEGORIES`; -1 when nothing is required."""
    reference_margin: float = field(init=False)
    """Median margin of the active products with a positive margin (1.0 if there are none)."""
    _contract_rule: _SetRule = field(init=False, repr=False)
    _region_rule: _SetRule = field(init=False, repr=False)
    _channel_rule: _SetRule = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.product_ids)
        put = object.__setattr__  # frozen: derived columns are set once, here
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
        put(self, "_contract_rule", _SetRule.build(self.contract_types))
        put(self, "_region_rule", _SetRule.build(self.regions))
        put(self, "_channel_rule", _SetRule.build(self.channels))

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]]) -> Catalogue:
        """Build from rows keyed by the products table's column names.

        Values may be typed (Decimal, bool, None) as read from the database or text as read
        from the import file; eligibility lists are `|`-separated, empty meaning any.
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

    def channel_allowed(self, channel: str | None) -> BoolArray:
        """Which products may be offered in a channel; None means any channel (no filter)."""
        if channel is None:
            return np.ones(self.n_products, dtype=np.bool_)
        return self._channel_rule.row(channel)


@dataclass(frozen=True, eq=False)
class Customers:
    """The customers to arbitrate for, as column arrays (one row per customer).

    `held` is customers × products (catalogue columns). `held_categories`, columns in
    `CATEGORIES` order (e.g. from the `*_held` feature counts > 0), is optional: a customer
    holds a category when it says so or when a held product is of that category.
    `churn_risk` NaN means unknown, which counts as not at risk.
    """

    contract_type: AnyArray
    region: AnyArray
    tenure_months: FloatArray
    held: BoolArray
    churn_risk: FloatArray
    held_categories: BoolArray | None = None

    def __post_init__(self) -> None:
        put = object.__setattr__
        put(self, "contract_type", np.asarray(self.contract_type).reshape(-1))
        put(self, "region", np.asarray(self.region).reshape(-1))
        put(self, "tenure_months", np.asarray(self.tenure_months, np.float64).reshape(-1))
        put(self, "churn_risk", np.asarray(self.churn_risk, np.float64).reshape(-1))
        held = np.asarray(self.held, dtype=np.bool_)
        put(self, "held", held.reshape(1, -1) if held.ndim == 1 else held)
        n = self.n_customers
        if any(len(c) != n for c in (self.region, self.tenure_months, self.churn_risk)):
            raise ValueError("every customer column must have one value per customer")
        if self.held.ndim != 2 or self.held.shape[0] != n:
            raise ValueError(f"held must be customers × products, got {self.held.shape}")
        if self.held_categories is not None:
            cats = np.asarray(self.held_categories, dtype=np.bool_)
            cats = cats.reshape(1, -1) if cats.ndim == 1 else cats
            if cats.shape != (n, len(CATEGORIES)):
                raise ValueError(f"held_categories must be customers × {len(CATEGORIES)}")
            put(self, "held_categories", cats)

    @classmethod
    def single(
        cls,
        *,
        contract_type: str,
        region: str,
        tenure_months: float,
        held: npt.ArrayLike,
        churn_risk: float | None = None,
        held_categories: npt.ArrayLike | None = None,
    ) -> Customers:
        """One customer (the live API case): a 1-row `Customers`."""
        return cls(
            contract_type=np.array([contract_type]),
            region=np.array([region]),
            tenure_months=np.array([tenure_months], np.float64),
            held=np.asarray(held, dtype=np.bool_).reshape(1, -1),
            churn_risk=np.array([math.nan if churn_risk is None else churn_risk], np.float64),
            held_categories=(
                None
                if held_categories is None
                else np.asarray(held_categories, dtype=np.bool_).reshape(1, -1)
            ),
        )

    @property
    def n_customers(self) -> int:
        """Number of customers (rows)."""
        return int(self.contract_type.shape[0])


@dataclass(frozen=True)
class OfferPolicy:
    """The business knobs of arbitration (see docs/offers.md for what each one does)."""

    value_weight: float = 0.5
    """0 ranks by propensity only, 1 by expected value (propensity × margin) only."""
    contact_cap: int = 3
    """An offer shown this many times within `contact_window_days` is not shown again."""
    contact_window_days: int = 30
    """The window the caller counts contacts over (see `window_start`)."""
    high_churn_risk: float = 0.4
    """Churn risk at or above which a customer is at risk."""
    retention_boost: float = 2.0
    """Multiplier on a retention offer's score for customers at risk."""
    retention_only_for_at_risk: bool = True
    """Retention offers are not shown to customers below `high_churn_risk` (or unknown)."""
    min_propensity: float = 0.0
    """Offers with a lower propensity are not shown."""
    retention_value: float | None = None
    """Value basis of a retention offer (the margin saved by keeping the customer); None
    means the catalogue's reference margin, i.e. a retention offer is worth a typical sale."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.value_weight <= 1.0:
            raise ValueError("value_weight must be within 0..1")
        if self.contact_cap < 1:
            raise ValueError("contact_cap must be at least 1")
        if self.contact_window_days < 1:
            raise ValueError("contact_window_days must be at least 1")
        if not self.retention_boost > 0:
            raise ValueError("retention_boost must be > 0")
        if not 0.0 <= self.min_propensity <= 1.0:
            raise ValueError("min_propensity must be within 0..1")
        if self.retention_value is not None and not self.retention_value >= 0:
            raise ValueError("retention_value must be >= 0")

    def window_start(self, as_of: datetime) -> datetime:
        """First instant of the contact window ending at `as_of` (contacts from here count)."""
        return as_of - timedelta(days=self.contact_window_days)


DEFAULT_POLICY: Final = OfferPolicy()


@dataclass(frozen=True)
class Offer:
    """One offer of a slate, resolved to catalogue values (for an API answer)."""

    product_id: str
    name: str
    category: str
    score: float
    propensity: float
    expected_value: float
    reasons: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class OfferSlate:
    """The offers chosen per customer: customers × k arrays, best first.

    Empty slots (fewer than k eligible offers) have product index -1 and NaN values.
    Reasons are kept as compact codes and turned into strings only for what is asked.
    """

    product_index: IntArray
    score: FloatArray
    propensity: FloatArray
    expected_value: FloatArray
    catalogue: Catalogue = field(repr=False)
    reason_flags: npt.NDArray[np.uint8] = field(repr=False)
    """Bit set per offer: which built-in reasons apply."""
    reason_code: npt.NDArray[np.int32] | None = field(repr=False)
    """Per offer, the caller's extra reason code (index into `reason_texts`), -1 for none."""
    reason_texts: tuple[str, ...] = field(repr=False)
    _cache: dict[tuple[int, int, int], tuple[str, ...]] = field(
        default_factory=dict, init=False, repr=False
    )

    @property
    def n_customers(self) -> int:
        """Number of customers (rows)."""
        return int(self.product_index.shape[0])

    @property
    def k(self) -> int:
        """Slots per customer."""
        return int(self.product_index.shape[1])

    def reasons(self, i: int, j: int) -> list[str]:
        """Why customer i got offer j: at most 3 short strings, most important first."""
        product = int(self.product_index[i, j])
        if product < 0:
            return []
        code = -1 if self.reason_code is None else int(self.reason_code[i, j])
        return list(self._strings(product, int(self.reason_flags[i, j]), code))

    def _strings(self, product: int, flags: int, code: int) -> tuple[str, ...]:
        key = (product, flags, code)
        hit = self._cache.get(key)
        if hit is None:
            hit = _reason_strings(self.catalogue, self.reason_texts, product, flags, code)
            self._cache[key] = hit
        return hit

    def offers(self, i: int) -> list[Offer]:
        """Customer i's offers, best first, padding left out."""
        cat = self.catalogue
        out = []
        for j in range(self.k):
            p = int(self.product_index[i, j])
            if p < 0:
                break
            out.append(
                Offer(
                    product_id=str(cat.product_ids[p]),
                    name=str(cat.names[p]),
                    category=str(cat.categories[p]),
                    score=float(self.score[i, j]),
                    propensity=float(self.propensity[i, j]),
                    expected_value=float(self.expected_value[i, j]),
                    reasons=tuple(self.reasons(i, j)),
                )
            )
        return out

    def reason_table(self) -> tuple[npt.NDArray[np.int32], list[tuple[str, ...]]]:
        """Reasons for every offer at once: an id per slot (-1 = padding) and the id's strings.

        Reasons depend only on (product, flags, code), so a batch job stores ids and a small
        table instead of building strings for millions of offers.
        """
        n_codes = len(self.reason_texts) + 1
        codes = (
            np.zeros(self.product_index.shape, np.int64)
            if self.reason_code is None
            else self.reason_code.astype(np.int64) + 1
        )
        stride = _FLAG_SPACE * n_codes
        key = ((self.product_index + 1) * stride + self.reason_flags * n_codes + codes).ravel()
        space = (self.catalogue.n_products + 1) * stride
        if space <= _DENSE_KEY_SPACE:
            # Linear time: mark the keys present, number them in key order.
            present = np.bincount(key, minlength=space) > 0
            uniques = np.flatnonzero(present)
            inverse = (np.cumsum(present) - 1)[key]
        else:
            uniques, inverse = np.unique(key, return_inverse=True)
        ids = inverse.reshape(self.product_index.shape).astype(np.int32)
        if uniques.size and uniques[0] == 0:
            # Key 0 is padding (no product, flags or code): drop it, so padding becomes -1.
            uniques = uniques[1:]
            ids -= 1
        table: list[tuple[str, ...]] = []
        for u in uniques.tolist():
            product, rest = divmod(int(u), stride)
            flags, code = divmod(rest, n_codes)
            table.append(self._strings(product - 1, flags, code - 1))
        return ids, table


def _reason_strings(
    cat: Catalogue, texts: Sequence[str], product: int, flags: int, code: int
) -> tuple[str, ...]:
    # Fixed priority, so the same offer always reads the same and the top 3 are the strongest.
    out: list[str] = []
    if flags & _R_RETENTION:
        out.append("retention offer: high churn risk")
    if flags & _R_INTEREST:
        share = round(HIGH_INTEREST_SHARE * 100)
        out.append(f"high predicted interest (top {share} % of this customer's scores)")
    if code >= 0:
        out.append(texts[code])
    if flags & _R_VALUE:
        out.append(f"high value: margin {cat.margin[product]:.2f}")
    if flags & _R_COMPLEMENT:
        required = cat.requires_category[product] or ""
        out.append(f"complements your {CATEGORY_LABELS.get(required, required)}")
    if not out:
        out.append("best remaining match for this customer")
    return tuple(out[:MAX_REASONS])


def contact_counts(
    customer_index: npt.ArrayLike,
    product_index: npt.ArrayLike,
    n_customers: int,
    n_products: int,
) -> npt.NDArray[np.int32]:
    """Contacts per customer × product from contact-history rows already inside the window.

    Each row is one contact, given as positions (customer row, catalogue column). The same
    construction with `> 0` gives a `held` matrix from subscription rows.
    """
    ci = np.asarray(customer_index, dtype=np.int64).reshape(-1)
    pi = np.asarray(product_index, dtype=np.int64).reshape(-1)
    if ci.shape != pi.shape:
        raise ValueError("customer_index and product_index must have the same length")
    if ci.size and (ci.min() < 0 or ci.max() >= n_customers or pi.min() < 0):
        raise ValueError("customer_index out of range")
    if pi.size and pi.max() >= n_products:
        raise ValueError("product_index out of range")
    flat = np.bincount(ci * n_products + pi, minlength=n_customers * n_products)
    return flat.astype(np.int32).reshape(n_customers, n_products)


def _check_matrix(name: str, matrix: AnyArray | None, shape: tuple[int, int]) -> None:
    if matrix is not None and matrix.shape != shape:
        raise ValueError(f"{name} must be customers × products {shape}, got {matrix.shape}")


@dataclass(frozen=True, eq=False)
class _Plan:
    """What one arbitration call computes once and every row block reuses."""

    static_ok: BoolArray
    contract_codes: IntArray
    region_codes: IntArray
    at_risk: BoolArray
    category_onehot: npt.NDArray[np.float32]
    requires_col: IntArray


def _plan(
    catalogue: Catalogue, customers: Customers, channel: str | None, policy: OfferPolicy
) -> _Plan:
    if customers.held.shape[1] != catalogue.n_products:
        raise ValueError(
            f"held has {customers.held.shape[1]} columns, catalogue {catalogue.n_products}"
        )
    n_cat = len(CATEGORIES)
    onehot = np.zeros((catalogue.n_products, n_cat), np.float32)
    onehot[np.arange(catalogue.n_products), catalogue.category_code] = 1.0
    # Column n_cat of the block's held-categories matrix is all true: "nothing required".
    requires_col = np.where(catalogue.requires_code >= 0, catalogue.requires_code, n_cat)
    return _Plan(
        static_ok=catalogue.active & catalogue.channel_allowed(channel),
        contract_codes=catalogue._contract_rule.codes(customers.contract_type),
        region_codes=catalogue._region_rule.codes(customers.region),
        # NaN >= x is false: unknown risk is not at risk.
        at_risk=customers.churn_risk >= policy.high_churn_risk,
        category_onehot=onehot,
        requires_col=requires_col.astype(np.int64),
    )


def _eligible_block(
    catalogue: Catalogue,
    customers: Customers,
    plan: _Plan,
    rows: slice,
    contacts: AnyArray | None,
    policy: OfferPolicy,
) -> BoolArray:
    held = customers.held[rows]
    ok = catalogue._contract_rule.allowed[plan.contract_codes[rows]]
    ok &= catalogue._region_rule.allowed[plan.region_codes[rows]]
    ok &= plan.static_ok
    ok &= customers.tenure_months[rows, None] >= catalogue.min_tenure_months
    ok &= ~held
    if np.any(catalogue.requires_code >= 0):
        cats = np.ones((held.shape[0], len(CATEGORIES) + 1), np.bool_)
        cats[:, :-1] = (held.astype(np.float32) @ plan.category_onehot) > 0
        if customers.held_categories is not None:
            cats[:, :-1] |= customers.held_categories[rows]
        ok &= cats[:, plan.requires_col]
    if contacts is not None:
        ok &= contacts[rows] < policy.contact_cap
    if policy.retention_only_for_at_risk and catalogue.is_retention.any():
        ok &= ~(catalogue.is_retention & ~plan.at_risk[rows, None])
    return ok


def _blocks(n_rows: int, n_cols: int) -> Iterable[slice]:
    step = max(1, _BLOCK_CELLS // max(1, n_cols))
    for start in range(0, n_rows, step):
        yield slice(start, min(n_rows, start + step))


def eligibility(
    catalogue: Catalogue,
    customers: Customers,
    channel: str | None,
    *,
    contacts_in_window: npt.ArrayLike | None = None,
    policy: OfferPolicy = DEFAULT_POLICY,
) -> BoolArray:
    """Which products each customer may be offered: a customers × products boolean matrix.

    Applies every rule of docs/offers.md except `min_propensity`, which needs scores.
    `channel` None means any channel; `contacts_in_window` None means no contacts.
    """
    contacts = None if contacts_in_window is None else np.asarray(contacts_in_window)
    shape = (customers.n_customers, catalogue.n_products)
    _check_matrix("contacts_in_window", contacts, shape)
    plan = _plan(catalogue, customers, channel, policy)
    out = np.empty(shape, np.bool_)
    for rows in _blocks(*shape):
        out[rows] = _eligible_block(catalogue, customers, plan, rows, contacts, policy)
    return out


def _top_k(score: FloatArray, k: int) -> IntArray:
    """Columns of the k highest scores per row, best first, ties to the lower column."""
    n = score.shape[1]
    if n <= _FULL_SORT_MAX_PRODUCTS or 4 * k >= n:
        return np.argsort(-score, axis=1, kind="stable")[:, :k].astype(np.int64)
    # Large catalogues: select the k best in linear time, then sort only those. Ties at the
    # k-th value are filled from the lowest columns so the result equals the full sort's.
    kth = np.partition(score, n - k, axis=1)[:, n - k, None]
    above = score > kth
    tied = score == kth
    need = k - above.sum(axis=1, keepdims=True)
    take = above | (tied & (np.cumsum(tied, axis=1) <= need))
    cols = np.nonzero(take)[1].reshape(score.shape[0], k)
    order = np.argsort(-np.take_along_axis(score, cols, axis=1), axis=1, kind="stable")
    return np.take_along_axis(cols, order, axis=1).astype(np.int64)


def value_factor(catalogue: Catalogue, policy: OfferPolicy) -> FloatArray:
    """Per product, (value / reference margin) ** value_weight: the score's value term.

    Value is the margin, or `retention_value` (default: the reference margin) for retention
    offers, whose margin is 0 but which keep a customer's margin.
    """
    ref = catalogue.reference_margin
    retention_value = ref if policy.retention_value is None else policy.retention_value
    value = np.where(catalogue.is_retention, retention_value, catalogue.margin)
    return np.power(value / ref, policy.value_weight)


def arbitrate(
    propensity: npt.ArrayLike,
    catalogue: Catalogue,
    customers: Customers,
    *,
    channel: str | None,
    contacts_in_window: npt.ArrayLike | None,
    policy: OfferPolicy = DEFAULT_POLICY,
    k: int,
    reason_codes: npt.ArrayLike | None = None,
    reason_texts: Sequence[str] = (),
) -> OfferSlate:
    """Choose up to k offers per customer from customers × products propensities.

    score = propensity × (value / reference margin) ** value_weight, × retention_boost for
    retention offers to customers at risk; ineligible offers, propensity NaN or below
    `min_propensity` are never chosen. `reason_codes` (customers × products, -1 = none)
    indexes `reason_texts` for an extra reason from upstream, e.g. "popular with customers
    like you". The same code serves one customer (a 1-row matrix) and a million.
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    prop = np.asarray(propensity)
    contacts = None if contacts_in_window is None else np.asarray(contacts_in_window)
    codes = None if reason_codes is None else np.asarray(reason_codes)
    n, n_products = customers.n_customers, catalogue.n_products
    shape = (n, n_products)
    for name, matrix in (("propensity", prop), ("contacts", contacts), ("reasons", codes)):
        _check_matrix(name, matrix, shape)
    plan = _plan(catalogue, customers, channel, policy)
    factor = value_factor(catalogue, policy)
    retention_cols = np.flatnonzero(catalogue.is_retention)
    high_value = (~catalogue.is_retention) & (catalogue.margin > catalogue.reference_margin)
    n_interest = max(1, math.ceil(HIGH_INTEREST_SHARE * n_products))
    width = min(k, n_products)

    index_out = np.full((n, k), -1, np.int64)
    score_out = np.full((n, k), np.nan)
    prop_out = np.full((n, k), np.nan)
    flags_out = np.zeros((n, k), np.uint8)
    code_out = None if codes is None else np.full((n, k), -1, np.int32)

    # An empty catalogue leaves every slot padded (and the loop has nothing to select from).
    for rows in _blocks(*shape) if n_products else ():
        p = np.asarray(prop[rows], dtype=np.float64)
        if np.any((p < 0) | (p > 1)):
            raise ValueError("propensity must be within 0..1 (NaN = no score)")
        ok = _eligible_block(catalogue, customers, plan, rows, contacts, policy)
        ok &= p >= policy.min_propensity  # also drops NaN
        score = p * factor
        at_risk = plan.at_risk[rows]
        if retention_cols.size and at_risk.any():
            risky = np.flatnonzero(at_risk)
            score[np.ix_(risky, retention_cols)] *= policy.retention_boost
        score[~ok] = -np.inf
        cols = _top_k(score, width)
        top = np.take_along_axis(score, cols, axis=1)
        valid = top > -np.inf
        cols[~valid] = -1
        safe = np.where(valid, cols, 0)
        index_out[rows, :width] = cols
        score_out[rows, :width] = np.where(valid, top, np.nan)
        chosen_p = np.where(valid, np.take_along_axis(p, safe, axis=1), np.nan)
        prop_out[rows, :width] = chosen_p

        # Reason flags: cheap vectorised bits now, strings later for the rows asked for.
        interest_floor = np.partition(
            np.where(np.isnan(p), -np.inf, p), n_products - n_interest, axis=1
        )[:, n_products - n_interest, None]
        flags = np.zeros(cols.shape, np.uint8)
        flags[catalogue.is_retention[safe] & at_risk[:, None]] |= _R_RETENTION
        flags[(chosen_p >= interest_floor) & (chosen_p > 0)] |= _R_INTEREST
        if policy.value_weight > 0:
            flags[high_value[safe]] |= _R_VALUE
        flags[catalogue.requires_code[safe] >= 0] |= _R_COMPLEMENT
        flags[~valid] = 0
        flags_out[rows, :width] = flags
        if codes is not None and code_out is not None:
            extra = np.take_along_axis(np.asarray(codes[rows]), safe, axis=1)
            if extra.size and (extra.min() < -1 or extra.max() >= len(reason_texts)):
                raise ValueError("reason_codes must be -1 or an index into reason_texts")
            code_out[rows, :width] = np.where(valid, extra, -1)

    # Padding gathers column 0's margin, but its propensity is NaN, so its value is NaN too.
    expected_value = catalogue.margin[np.maximum(index_out, 0)] if n_products else prop_out.copy()
    expected_value *= prop_out
    return OfferSlate(
        product_index=index_out,
        score=score_out,
        propensity=prop_out,
        expected_value=expected_value,
        catalogue=catalogue,
        reason_flags=flags_out,
        reason_code=code_out,
        reason_texts=tuple(reason_texts),
    )


__all__ = [
    "CATEGORIES",
    "DEFAULT_POLICY",
    "Catalogue",
    "Customers",
    "Offer",
    "OfferPolicy",
    "OfferSlate",
    "arbitrate",
    "contact_counts",
    "eligibility",
    "value_factor",
]
