"""The latent customer segments of the synthetic world: who they are and what they buy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nextoffer.domain.vocabulary import Channel, ContractType
from nextoffer.synth.catalog import Catalog
from nextoffer.synth.market import AGE_BANDS, PAYMENT_METHODS, REGIONS


@dataclass(frozen=True)
class Segment:
    """A latent customer segment: what its members look like and what they tend to buy.

    Probability tuples follow the vocabularies' order: ages 18-24..65+; contracts prepaid,
    month_to_month, one_year, two_year; payment direct_debit, credit_card, bank_transfer,
    voucher (postpaid customers); channels retail, web, app, call_center, telesales; phones
    budget, mid, flagship. `affinity` adds to the log purchase hazard of products.
    """

    name: str
    description: str
    share: float
    ages: tuple[float, ...]
    urban_tilt: float
    contracts: tuple[float, ...]
    payments: tuple[float, ...]
    tenure_months: float
    data_gb: float
    voice_min: float
    broadband: float
    broadband_only: float
    fibre_1g: float
    price_sensitivity: float
    service_issues: float
    digital: float
    app_share: float
    channels: tuple[float, ...]
    phones: tuple[float, ...]
    business_plan: float
    arpu_norm: float
    affinity: dict[str, float] = field(default_factory=dict)


_DESCRIPTIONS = {
    "young_digital": "18-34, urban, app-first, heavy data, music and wearables",
    "families": "35-54, suburban households: extra lines, kids, TV, tablets, home Wi-Fi",
    "business_pros": "25-54, urban professionals: roaming, flagship phones, cloud, insurance",
    "budget_prepaid": (
        "mostly prepaid, price-sensitive: small data packs, calls abroad, cheap phones"
    ),
    "seniors": "55+, voice and TV, insurance and security, shops in stores",
    "streamers_gamers": "18-34, fibre at home, gaming, TV bundles, mesh Wi-Fi, big data packs",
}
"""The segments in order, with what sets each apart."""

_PHONE_TIERS = ("budget", "mid", "flagship")

# One row per trait, one column per segment (in _DESCRIPTIONS' order), so that segments
# compare at a glance. "ages 18-24" and the like are one category of a distribution: its
# rows follow the vocabulary's order and make up the segment's `ages` tuple.
# fmt: off
_TRAITS: dict[str, tuple[float, ...]] = {
    #                             young  family     biz  budget  senior  stream
    "share":                    (  0.20,   0.20,   0.12,   0.20,   0.14,   0.14),
    "ages 18-24":               (  0.45,   0.00,   0.00,   0.25,   0.00,   0.40),
    "ages 25-34":               (  0.45,   0.20,   0.30,   0.20,   0.00,   0.40),
    "ages 35-44":               (  0.10,   0.45,   0.35,   0.15,   0.00,   0.15),
    "ages 45-54":               (  0.00,   0.30,   0.25,   0.15,   0.00,   0.05),
    "ages 55-64":               (  0.00,   0.05,   0.10,   0.10,   0.35,   0.00),
    "ages 65+":                 (  0.00,   0.00,   0.00,   0.15,   0.65,   0.00),
    "urban_tilt":               (  1.20,  -0.20,   1.50,  -0.60,  -0.80,   0.80),
    "contracts prepaid":        (  0.25,   0.05,   0.00,   0.75,   0.20,   0.10),
    "contracts month_to_month": (  0.40,   0.20,   0.15,   0.20,   0.25,   0.45),
    "contracts one_year":       (  0.20,   0.30,   0.35,   0.05,   0.25,   0.25),
    "contracts two_year":       (  0.15,   0.45,   0.50,   0.00,   0.30,   0.20),
    "payments direct_debit":    (  0.35,   0.65,   0.45,   0.40,   0.45,   0.35),
    "payments credit_card":     (  0.50,   0.25,   0.45,   0.20,   0.05,   0.50),
    "payments bank_transfer":   (  0.15,   0.10,   0.10,   0.40,   0.50,   0.15),
    "payments voucher":         (  0.00,   0.00,   0.00,   0.00,   0.00,   0.00),
    "tenure_months":            (    30,     60,     55,     36,     80,     36),
    "data_gb":                  (    22,     12,     18,      4,      2,     45),
    "voice_min":                (   110,    250,    600,    150,    300,     90),
    "broadband":                (  0.25,   0.70,   0.45,   0.10,   0.50,   0.80),
    "broadband_only":           (  0.01,   0.05,   0.01,   0.01,   0.12,   0.01),
    "fibre_1g":                 (  0.25,   0.20,   0.40,   0.02,   0.05,   0.50),
    "price_sensitivity":        (  0.90,   1.00,   0.40,   1.80,   1.20,   0.80),
    "service_issues":           (  1.00,   1.00,   0.90,   1.10,   1.30,   1.00),
    "digital":                  (  1.60,   1.00,   1.20,   0.60,   0.35,   1.80),
    "app_share":                (  0.70,   0.50,   0.50,   0.40,   0.25,   0.65),
    "channels retail":          (  0.15,   0.35,   0.25,   0.45,   0.55,   0.10),
    "channels web":             (  0.35,   0.25,   0.30,   0.20,   0.05,   0.40),
    "channels app":             (  0.40,   0.20,   0.15,   0.15,   0.05,   0.40),
    "channels call_center":     (  0.05,   0.10,   0.05,   0.15,   0.25,   0.05),
    "channels telesales":       (  0.05,   0.10,   0.25,   0.05,   0.10,   0.05),
    "phones budget":            (  0.30,   0.45,   0.05,   0.85,   0.60,   0.20),
    "phones mid":               (  0.60,   0.45,   0.35,   0.15,   0.35,   0.50),
    "phones flagship":          (  0.10,   0.10,   0.60,   0.00,   0.05,   0.30),
    "business_plan":            (  0.00,   0.00,   0.45,   0.00,   0.00,   0.00),
    "arpu_norm":                (  46.0,   72.0,  103.0,   17.0,   37.0,  106.0),
}
# fmt: on

_AFFINITY: dict[str, dict[str, float]] = {
    "young_digital": {
        "ADD-MUSIC": 1.9,
        "ADD-DATA-10": 0.6,
        "ADD-DATA-50": 0.9,
        "ADD-GAMING": 0.6,
        "ADD-ROAM-EU": 0.8,
        "ADD-CLOUD": 0.3,
        "DEV-PHONE-MID": 1.0,
        "DEV-WATCH": 1.5,
        "DEV-PHONE-FLAG": 0.2,
        "ADD-TV": -0.6,
        "ADD-TV-SPORT": -0.3,
        "ADD-INSURE": -0.4,
        "ADD-KIDS": -2.5,
        "ADD-FAMILY": -1.5,
        "BUN-FAMILY": -2.0,
        "DEV-TABLET": -0.4,
        "ADD-SECURITY": -0.8,
        "ADD-INTL": -0.2,
    },
    "families": {
        "ADD-KIDS": 2.4,
        "ADD-FAMILY": 1.9,
        "BUN-FAMILY": 2.0,
        "ADD-TV": 0.9,
        "BUN-DUO": 1.2,
        "DEV-TABLET": 1.4,
        "DEV-MESH": 0.8,
        "BB-DSL-50": 0.8,
        "BB-5G-HOME": 0.8,
        "BB-FIB-300": 0.9,
        "BB-FIB-1G": 0.5,
        "ADD-SECURITY": 0.6,
        "ADD-INSURE": 0.3,
        "ADD-GAMING": -0.3,
        "ADD-ROAM-WORLD": -0.5,
        "ADD-MUSIC": -0.2,
    },
    "business_pros": {
        "ADD-ROAM-WORLD": 2.6,
        "ADD-ROAM-EU": 1.0,
        "ADD-INTL": 1.0,
        "ADD-CLOUD": 1.5,
        "ADD-INSURE": 1.2,
        "DEV-PHONE-FLAG": 1.8,
        "DEV-WATCH": 0.6,
        "ADD-SECURITY": 1.2,
        "DEV-TABLET": 0.5,
        "ADD-KIDS": -1.5,
        "ADD-GAMING": -1.2,
        "ADD-TV": -0.3,
        "ADD-FAMILY": -0.8,
        "BUN-FAMILY": -1.5,
        "DEV-PHONE-BUDGET": -1.5,
    },
    "budget_prepaid": {
        "ADD-DATA-10": 1.4,
        "ADD-INTL": 1.9,
        "DEV-PHONE-BUDGET": 1.6,
        "ADD-ROAM-EU": 0.2,
        "RET-DATA-BOOST": 0.5,
        "DEV-PHONE-FLAG": -2.5,
        "DEV-WATCH": -1.5,
        "DEV-TABLET": -1.0,
        "ADD-CLOUD": -1.0,
        "ADD-TV": -0.5,
        "BUN-DUO": -0.8,
        "BUN-TV": -0.8,
        "BUN-FAMILY": -0.8,
        "ADD-MUSIC": -0.5,
        "ADD-INSURE": -0.8,
        "ADD-GAMING": -1.0,
        "ADD-SECURITY": -0.5,
    },
    "seniors": {
        "ADD-INSURE": 2.1,
        "ADD-TV": 1.2,
        "ADD-TV-SPORT": 0.4,
        "DEV-TABLET": 0.7,
        "DEV-PHONE-BUDGET": 0.4,
        "ADD-SECURITY": 1.4,
        "ADD-DATA-10": -1.0,
        "ADD-DATA-50": -1.5,
        "ADD-GAMING": -3.0,
        "ADD-MUSIC": -1.2,
        "DEV-WATCH": -0.5,
        "ADD-ROAM-WORLD": -0.3,
        "ADD-KIDS": -0.5,
        "DEV-PHONE-FLAG": -1.0,
    },
    "streamers_gamers": {
        "ADD-GAMING": 2.8,
        "ADD-TV": 1.3,
        "ADD-TV-SPORT": 0.8,
        "BUN-TV": 1.8,
        "DEV-MESH": 1.4,
        "ADD-DATA-50": 1.3,
        "ADD-MUSIC": 0.8,
        "BB-FIB-1G": 1.2,
        "DEV-PHONE-FLAG": 0.5,
        "ADD-KIDS": -2.0,
        "ADD-INSURE": -0.5,
        "ADD-FAMILY": -1.0,
        "ADD-INTL": -0.5,
        "ADD-SECURITY": -0.5,
    },
}

_CATEGORIES = {
    "ages": AGE_BANDS,
    "contracts": tuple(ContractType),
    "payments": PAYMENT_METHODS,
    "channels": tuple(Channel),
    "phones": _PHONE_TIERS,
}


def _segment(column: int, name: str) -> Segment:
    """Segment `name` from its column of the trait table."""
    traits: dict[str, Any] = {}
    for label, row in _TRAITS.items():
        trait, _, category = label.partition(" ")
        if category:
            traits[trait] = (*traits.get(trait, ()), row[column])
        else:
            traits[trait] = row[column]
    return Segment(name, _DESCRIPTIONS[name], affinity=_AFFINITY[name], **traits)


def _check_table() -> None:
    # A distribution's rows must be its vocabulary, in order: the tuples are read by position.
    for trait, categories in _CATEGORIES.items():
        labels = [label for label in _TRAITS if label.partition(" ")[0] == trait]
        if labels != [f"{trait} {c}" for c in categories]:
            raise ValueError(f"segment table: the {trait} rows must be {list(categories)}")


_check_table()
SEGMENTS: tuple[Segment, ...] = tuple(_segment(i, name) for i, name in enumerate(_DESCRIPTIONS))

PREPAID_PAYMENTS = (0.10, 0.25, 0.0, 0.65)
"""Prepaid customers mostly top up with vouchers (same order as Segment.payments)."""


def region_table() -> np.ndarray:
    """Per segment, the probability of each region (urban-leaning segments favour cities)."""
    shares = np.array([r.share for r in REGIONS])
    urbanity = np.array([r.urbanity for r in REGIONS])
    rows = [shares * np.exp(s.urban_tilt * (urbanity - 0.5) * 2.0) for s in SEGMENTS]
    table = np.array(rows)
    return np.asarray(table / table.sum(axis=1, keepdims=True))


def affinity_matrix(catalog: Catalog) -> np.ndarray:
    """Segments x products: the segment's log-hazard offset for each product."""
    matrix = np.zeros((len(SEGMENTS), catalog.n))
    for s, seg in enumerate(SEGMENTS):
        for pid, value in seg.affinity.items():
            matrix[s, catalog.index[pid]] = value
    return matrix
