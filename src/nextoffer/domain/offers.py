"""Business arbitration: turn per-product propensities into the next-best offers shown.

The catalogue lives in `domain.catalogue`, the chosen offers (`OfferSlate`, `Offer`) in
`domain.slate`; this module holds the customers, the policy and the rules between them, and
re-exports the others so callers need one import.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from nextoffer.domain.catalogue import (
    CATEGORIES,
    AnyArray,
    BoolArray,
    Catalogue,
    FloatArray,
    IntArray,
)
from nextoffer.domain.slate import (
    HIGH_INTEREST_SHARE,
    REASON_COMPLEMENT,
    REASON_INTEREST,
    REASON_RETENTION,
    REASON_UPGRADE,
    REASON_VALUE,
    Offer,
    OfferSlate,
    dump_offers,
    load_offers,
)

# Rows are processed in blocks of about this many cells: temporaries stay in cache-sized
# chunks and memory stays flat for 1 M customers, while one customer is simply a block of 1.
_BLOCK_CELLS: Final = 1 << 18
# Up to this many products a stable full sort per row beats partition + sort (measured:
# 29 vs 44 ns per cell at 40 products, 80 vs 16 ns at 2 000); both give identical results.
_FULL_SORT_MAX_PRODUCTS: Final = 64


@dataclass(frozen=True, eq=False)
class Customers:
    """The customers to arbitrate for, as column arrays (one row per customer).

    `held` is customers × products (catalogue columns). `held_categories`, columns in
    `CATEGORIES` order (e.g. from the `*_held` feature counts > 0), is optional: a customer
    holds a category when it says so or when a held product is of that category.
    `churn_risk` NaN means unknown, which counts as not at risk. `attributes` maps an
    attribute's name (without the frame's `attr_` prefix) to one value per customer: float
    for numbers, booleans (1.0/0.0) and dates (days since 1970-01-01), text for categories,
    NaN/None for missing; `requires_attribute` reads it, and a customer without the
    attribute does not qualify.
    """

    contract_type: AnyArray
    region: AnyArray
    tenure_months: FloatArray
    held: BoolArray
    churn_risk: FloatArray
    held_categories: BoolArray | None = None
    attributes: Mapping[str, AnyArray] | None = None

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
        if self.attributes is not None:
            columns = {str(k): np.asarray(v).reshape(-1) for k, v in self.attributes.items()}
            if any(c.shape[0] != n for c in columns.values()):
                raise ValueError("every attribute must have one value per customer")
            put(self, "attributes", columns)

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
        attributes: Mapping[str, Any] | None = None,
    ) -> Customers:
        """One customer (the live API case): a 1-row `Customers`.

        `attributes` gives one value per name: a number or bool (compared numerically) or
        text (compared as text); None is missing.
        """
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
            attributes=(
                None
                if attributes is None
                else {name: _one_value(value) for name, value in attributes.items()}
            ),
        )

    @property
    def n_customers(self) -> int:
        """Number of customers (rows)."""
        return int(self.contract_type.shape[0])


def _one_value(value: Any) -> AnyArray:
    """One customer's attribute as a 1-element column: float for numbers, else text."""
    if isinstance(value, bool | int | float | np.number | np.bool_):
        return np.array([float(value)], np.float64)
    return np.array([value], dtype=object)


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
    attribute_ok: BoolArray | None
    """Customers × the attribute rule's columns: every `requires_attribute` term met."""


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
        contract_codes=catalogue.contract_rule.codes(customers.contract_type),
        region_codes=catalogue.region_rule.codes(customers.region),
        # NaN >= x is false: unknown risk is not at risk.
        at_risk=customers.churn_risk >= policy.high_churn_risk,
        category_onehot=onehot,
        requires_col=requires_col.astype(np.int64),
        # Attribute terms depend on the customer only: matched once for every block.
        attribute_ok=(
            catalogue.attribute_rule.passes(customers.attributes, customers.n_customers)
            if catalogue.attribute_rule.active
            else None
        ),
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
    ok = catalogue.contract_rule.allowed[plan.contract_codes[rows]]
    ok &= catalogue.region_rule.allowed[plan.region_codes[rows]]
    ok &= plan.static_ok
    ok &= customers.tenure_months[rows, None] >= catalogue.min_tenure_months
    ok &= ~held
    requires_products = catalogue.requires_products_rule
    exclusion = catalogue.exclusion_rule
    needs_category = bool(np.any(catalogue.requires_code >= 0))
    if needs_category or requires_products.active or exclusion.active:
        held_f = held.astype(np.float32)
        if needs_category:
            cats = np.ones((held.shape[0], len(CATEGORIES) + 1), np.bool_)
            cats[:, :-1] = (held_f @ plan.category_onehot) > 0
            if customers.held_categories is not None:
                cats[:, :-1] |= customers.held_categories[rows]
            ok &= cats[:, plan.requires_col]
        if requires_products.active:
            ok[:, requires_products.columns] &= requires_products.holds_any(held_f)
        if exclusion.active:
            ok[:, exclusion.columns] &= exclusion.allowed(held, held_f)
    if plan.attribute_ok is not None:
        ok[:, catalogue.attribute_rule.columns] &= plan.attribute_ok[rows]
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


def _rank_retention_by_uplift(
    score: FloatArray,
    ok: BoolArray,
    p: FloatArray,
    lift: FloatArray,
    retention_cols: IntArray,
    factor: FloatArray,
) -> None:
    """In place: retention columns scored uplift × value, only the likeliest kept, if uplift > 0."""
    allowed = ok[:, retention_cols]
    likeliest = np.where(allowed, p[:, retention_cols], -np.inf).argmax(axis=1)
    keep = np.zeros_like(allowed)
    keep[np.arange(len(keep)), likeliest] = True
    # NaN > 0 is false: a customer the uplift model cannot score gets no retention offer.
    keep &= allowed & (lift > 0)[:, None]
    ok[:, retention_cols] = keep
    score[:, retention_cols] = lift[:, None] * factor[retention_cols]


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
    uplift: npt.ArrayLike | None = None,
) -> OfferSlate:
    """Choose up to k offers per customer from customers × products propensities.

    score = propensity × (value / reference margin) ** value_weight, × retention_boost for
    retention offers to customers at risk; ineligible offers, propensity NaN or below
    `min_propensity` are never chosen. `reason_codes` (customers × products, -1 = none)
    indexes `reason_texts` for an extra reason from upstream, e.g. "popular with customers
    like you". The same code serves one customer (a 1-row matrix) and a million.

    `uplift` (one value per customer: the predicted rise in the probability of staying that
    a retention offer causes) ranks retention offers by uplift instead: a customer gets at
    most one, the eligible retention offer with the highest propensity (the one a
    randomised campaign offers, so the one the uplift was learnt for), scored uplift ×
    (value / reference margin) ** value_weight with no boost, and only when the uplift is
    above 0 (a "persuadable"). NaN uplift counts as not persuadable. Other offers keep
    propensity × value.
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
    lift = None if uplift is None else np.asarray(uplift, np.float64).reshape(-1)
    if lift is not None and lift.shape != (n,):
        raise ValueError(f"uplift must have one value per customer ({n}), got {lift.shape}")
    plan = _plan(catalogue, customers, channel, policy)
    factor = value_factor(catalogue, policy)
    retention_cols = np.flatnonzero(catalogue.is_retention)
    complements = (catalogue.requires_code >= 0) | np.array(
        [bool(s) for s in catalogue.requires_products], np.bool_
    ).reshape(n_products)
    upgrades = catalogue.upgrade_rule
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
        if lift is not None and retention_cols.size:
            _rank_retention_by_uplift(score, ok, p, lift[rows], retention_cols, factor)
        elif retention_cols.size and at_risk.any():
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
        flags[catalogue.is_retention[safe] & at_risk[:, None]] |= REASON_RETENTION
        flags[(chosen_p >= interest_floor) & (chosen_p > 0)] |= REASON_INTEREST
        if policy.value_weight > 0:
            flags[high_value[safe]] |= REASON_VALUE
        flags[complements[safe]] |= REASON_COMPLEMENT
        if upgrades.active:
            # Upgrade reason: the customer holds one of the offer's `upgrades_from`.
            upgrading = np.zeros(p.shape, np.bool_)
            held_f = customers.held[rows].astype(np.float32)
            upgrading[:, upgrades.columns] = upgrades.holds_any(held_f)
            flags[np.take_along_axis(upgrading, safe, axis=1)] |= REASON_UPGRADE
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
    "dump_offers",
    "eligibility",
    "load_offers",
    "value_factor",
]
