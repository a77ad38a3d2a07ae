"""Chosen offers: the slate (customers × k arrays) and `Offer`, the one shape of an offer.

An `Offer` is what the answer chain, the precomputed table, the cache and the API all carry;
`to_dict` / `dump_offers` give the stored and cached JSON, `OfferOut` reads it directly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from nextoffer.domain.catalogue import Catalogue, FloatArray, IntArray

HIGH_INTEREST_SHARE: Final = 0.10
"""An offer is "high predicted interest" when in the top 10 % of the customer's propensities."""

MAX_REASONS: Final = 3

# Reason flags, one bit each, stored per offer; the strings are built only when asked for.
REASON_RETENTION: Final = 1
REASON_INTEREST: Final = 2
REASON_VALUE: Final = 4
REASON_COMPLEMENT: Final = 8
REASON_UPGRADE: Final = 16
_FLAG_SPACE: Final = 32
# reason_table numbers its keys with a bincount up to this key space, else with np.unique.
_DENSE_KEY_SPACE: Final = 1 << 22


# Decimals an offer's numbers keep once it leaves the slate: what is stored, cached and served.
SCORE_DECIMALS: Final = 6
VALUE_DECIMALS: Final = 4


@dataclass(frozen=True)
class Offer:
    """One offer for one customer: what precompute stores, the cache holds and the API shows.

    `model_version` names what chose it: an offers model version ('v3') or 'popular'.
    """

    product_id: str
    name: str
    category: str
    score: float
    propensity: float
    expected_value: float
    reasons: tuple[str, ...]
    model_version: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the stored and cached shape), in field order.

        Spelled out rather than `dataclasses.asdict`, which deep-copies recursively and was
        most of the time of a cache rebuild (a million offers at 100 000 customers).
        """
        return {
            "product_id": self.product_id,
            "name": self.name,
            "category": self.category,
            "score": self.score,
            "propensity": self.propensity,
            "expected_value": self.expected_value,
            "reasons": self.reasons,
            "model_version": self.model_version,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Offer:
        """Back from the stored shape."""
        return cls(
            product_id=str(data["product_id"]),
            name=str(data["name"]),
            category=str(data["category"]),
            score=float(data["score"]),
            propensity=float(data["propensity"]),
            expected_value=float(data["expected_value"]),
            reasons=tuple(str(r) for r in data.get("reasons", ())),
            model_version=str(data["model_version"]),
        )


def dump_offers(offers: Sequence[Offer]) -> str:
    """Offers as compact JSON text (cache values and precomputed rows)."""
    return json.dumps([o.to_dict() for o in offers], separators=(",", ":"))


def load_offers(text: str) -> list[Offer]:
    """Offers from `dump_offers` text."""
    return [Offer.from_dict(d) for d in json.loads(text)]


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
        return list(self._strings(product, int(self.reason_flags[i, j]), self._code(i, j)))

    def _code(self, i: int, j: int) -> int:
        return -1 if self.reason_code is None else int(self.reason_code[i, j])

    def _strings(self, product: int, flags: int, code: int) -> tuple[str, ...]:
        key = (product, flags, code)
        hit = self._cache.get(key)
        if hit is None:
            hit = _reason_strings(self.catalogue, self.reason_texts, product, flags, code)
            self._cache[key] = hit
        return hit

    def offers(self, i: int, model_version: str = "") -> list[Offer]:
        """Customer i's offers, best first, padding left out, numbers rounded as served."""
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
                    score=round(float(self.score[i, j]), SCORE_DECIMALS),
                    propensity=round(float(self.propensity[i, j]), SCORE_DECIMALS),
                    expected_value=round(float(self.expected_value[i, j]), VALUE_DECIMALS),
                    reasons=self._strings(p, int(self.reason_flags[i, j]), self._code(i, j)),
                    model_version=model_version,
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
    if flags & REASON_RETENTION:
        out.append("retention offer: high churn risk")
    if flags & REASON_INTEREST:
        share = round(HIGH_INTEREST_SHARE * 100)
        out.append(f"high predicted interest (top {share} % of this customer's scores)")
    if code >= 0:
        out.append(texts[code])
    if flags & REASON_VALUE:
        out.append(f"high value: margin {cat.margin[product]:.2f}")
    if flags & REASON_UPGRADE:
        out.append(f"upgrade from your {cat.upgrade_label(product)}")
    if flags & REASON_COMPLEMENT:
        out.append(f"complements your {cat.complement_label(product)}")
    if not out:
        out.append("best remaining match for this customer")
    return tuple(out[:MAX_REASONS])
