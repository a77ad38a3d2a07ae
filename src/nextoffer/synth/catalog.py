"""The catalogue and regions in array form, indexed by product position, for the simulation."""

from __future__ import annotations

import numpy as np

from nextoffer.synth.arrays import I64
from nextoffer.synth.market import CATEGORIES, CHANNELS, CONTRACTS, REGIONS
from nextoffer.synth.products import (
    BB,
    BROADBAND,
    BUN,
    COMPLEMENTS,
    DATA_PACKS,
    DEV,
    MOB,
    PHONES,
    PLAN_DOWN,
    PLAN_UP,
    PRODUCTS,
    RETENTION_ADDONS,
    Product,
)


def _check_text(value: str) -> None:
    # The writer never quotes, so catalogue text must be CSV-safe as it is.
    if any(ch in value for ch in ',"\n\r'):
        raise ValueError(f"catalogue text {value!r} contains a CSV special character")


class Catalog:
    """The catalogue as arrays indexed by product position, for vectorised simulation."""

    def __init__(self, products: tuple[Product, ...] = PRODUCTS) -> None:
        self.products = products
        self.ids = [p.product_id for p in products]
        self.index = {pid: i for i, pid in enumerate(self.ids)}
        for p in products:
            _check_text(p.name)
            _check_text(p.product_id)
            if not 0 <= p.margin <= p.price:
                raise ValueError(f"{p.product_id}: margin must be within 0..price")
        n = len(products)
        self.n = n
        self.category = np.array([CATEGORIES.index(p.category) for p in products], np.int8)
        self.cat_onehot = np.zeros((n, len(CATEGORIES)), np.float32)
        self.cat_onehot[np.arange(n), self.category] = 1.0
        self.price = np.array([p.price for p in products], np.int64)
        self.margin = np.array([p.margin for p in products], np.int64)
        self.offer_cost = np.array([p.offer_cost for p in products], np.int64)
        self.base_rate = np.array([p.base_rate for p in products], np.float64)
        self.cancel_rate = np.array([p.cancel_rate for p in products], np.float64)
        self.term_days = np.array([p.term_days for p in products], np.int64)
        self.allowance = np.array([p.allowance_gb for p in products], np.float64)
        self.min_tenure_days = np.array(
            [round(p.min_tenure_months * 30.44) for p in products], np.int64
        )
        self.requires = np.array(
            [CATEGORIES.index(p.requires) if p.requires else -1 for p in products], np.int8
        )
        self.retention = np.array([p.retention for p in products], np.bool_)
        self.active = np.array([p.active for p in products], np.bool_)
        self.is_mobile = self.category == CATEGORIES.index(MOB)
        self.is_broadband = self.category == CATEGORIES.index(BB)
        self.is_device = self.category == CATEGORIES.index(DEV)
        self.is_bundle = self.category == CATEGORIES.index(BUN)
        self.contract_ok = np.array(
            [[not p.contracts or c in p.contracts for c in CONTRACTS] for p in products], np.bool_
        )
        self.region_ok = np.array(
            [[not p.regions or r.name in p.regions for r in REGIONS] for p in products], np.bool_
        )
        self.channel_ok = np.array(
            [[not p.channels or c in p.channels for c in CHANNELS] for p in products], np.bool_
        )
        # Buyable through the purchase process: mobile plans only change by up/downgrade.
        self.buyable = self.active & ~self.is_mobile
        self.blocks = np.zeros((n, n), np.float32)
        self.replaces = np.zeros((n, n), np.bool_)
        groups = (PHONES, RETENTION_ADDONS, BROADBAND)
        for group in groups:
            for a in group:
                for b in group:
                    if a != b:
                        self.blocks[self.index[a], self.index[b]] = 1.0
        for p in products:
            i = self.index[p.product_id]
            for other in p.blocks:
                self.blocks[i, self.index[other]] = 1.0
            for other in p.replaces:
                # A bundle blocks what it contains; buying it ends those holdings.
                self.blocks[i, self.index[other]] = 1.0
                self.replaces[i, self.index[other]] = True
        for plan in ("MOB-UNL", "MOB-BIZ"):
            for pack in (*DATA_PACKS, "RET-DATA-BOOST"):
                self.blocks[self.index[plan], self.index[pack]] = 1.0
        # Products that cannot be bought together, either way round (and each with itself).
        self.conflicts = ((self.blocks + self.blocks.T) > 0) | np.eye(n, dtype=np.bool_)
        self.complement = np.zeros((n, n), np.float32)
        for held, bought, weight in COMPLEMENTS:
            self.complement[self.index[held], self.index[bought]] = weight
        self.up = np.full(n, -1, np.int64)
        self.down = np.full(n, -1, np.int64)
        for a, b in PLAN_UP.items():
            self.up[self.index[a]] = self.index[b]
        for a, b in PLAN_DOWN.items():
            self.down[self.index[a]] = self.index[b]
        # Effective monthly price (devices spread over the instalment term) drives the
        # price-sensitivity penalty.
        monthly = np.where(self.is_device, self.price / 24.0, self.price) / 100.0
        self.price_level = np.log1p(monthly / 10.0)

    def indices(self, ids: tuple[str, ...] | list[str]) -> I64:
        """Positions of the given product ids."""
        return np.array([self.index[i] for i in ids], np.int64)
