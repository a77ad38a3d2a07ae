"""The latent customer segments of the synthetic world: who they are and what they buy."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nextoffer.synth.catalog import Catalog
from nextoffer.synth.market import REGIONS


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


SEGMENTS: tuple[Segment, ...] = (
    Segment(
        name="young_digital",
        description="18-34, urban, app-first, heavy data, music and wearables",
        share=0.20,
        ages=(0.45, 0.45, 0.10, 0.0, 0.0, 0.0),
        urban_tilt=1.2,
        contracts=(0.25, 0.40, 0.20, 0.15),
        payments=(0.35, 0.50, 0.15, 0.0),
        tenure_months=30,
        data_gb=22,
        voice_min=110,
        broadband=0.25,
        broadband_only=0.01,
        fibre_1g=0.25,
        price_sensitivity=0.9,
        service_issues=1.0,
        digital=1.6,
        app_share=0.7,
        channels=(0.15, 0.35, 0.40, 0.05, 0.05),
        phones=(0.3, 0.6, 0.1),
        business_plan=0.0,
        arpu_norm=46.0,
        affinity={
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
    ),
    Segment(
        name="families",
        description="35-54, suburban households: extra lines, kids, TV, tablets, home Wi-Fi",
        share=0.20,
        ages=(0.0, 0.20, 0.45, 0.30, 0.05, 0.0),
        urban_tilt=-0.2,
        contracts=(0.05, 0.20, 0.30, 0.45),
        payments=(0.65, 0.25, 0.10, 0.0),
        tenure_months=60,
        data_gb=12,
        voice_min=250,
        broadband=0.70,
        broadband_only=0.05,
        fibre_1g=0.2,
        price_sensitivity=1.0,
        service_issues=1.0,
        digital=1.0,
        app_share=0.5,
        channels=(0.35, 0.25, 0.20, 0.10, 0.10),
        phones=(0.45, 0.45, 0.10),
        business_plan=0.0,
        arpu_norm=72.0,
        affinity={
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
    ),
    Segment(
        name="business_pros",
        description="25-54, urban professionals: roaming, flagship phones, cloud, insurance",
        share=0.12,
        ages=(0.0, 0.30, 0.35, 0.25, 0.10, 0.0),
        urban_tilt=1.5,
        contracts=(0.0, 0.15, 0.35, 0.50),
        payments=(0.45, 0.45, 0.10, 0.0),
        tenure_months=55,
        data_gb=18,
        voice_min=600,
        broadband=0.45,
        broadband_only=0.01,
        fibre_1g=0.4,
        price_sensitivity=0.4,
        service_issues=0.9,
        digital=1.2,
        app_share=0.5,
        channels=(0.25, 0.30, 0.15, 0.05, 0.25),
        phones=(0.05, 0.35, 0.60),
        business_plan=0.45,
        arpu_norm=103.0,
        affinity={
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
    ),
    Segment(
        name="budget_prepaid",
        description="mostly prepaid, price-sensitive: small data packs, calls abroad, cheap phones",
        share=0.20,
        ages=(0.25, 0.20, 0.15, 0.15, 0.10, 0.15),
        urban_tilt=-0.6,
        contracts=(0.75, 0.20, 0.05, 0.0),
        payments=(0.40, 0.20, 0.40, 0.0),
        tenure_months=36,
        data_gb=4,
        voice_min=150,
        broadband=0.10,
        broadband_only=0.01,
        fibre_1g=0.02,
        price_sensitivity=1.8,
        service_issues=1.1,
        digital=0.6,
        app_share=0.4,
        channels=(0.45, 0.20, 0.15, 0.15, 0.05),
        phones=(0.85, 0.15, 0.0),
        business_plan=0.0,
        arpu_norm=17.0,
        affinity={
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
    ),
    Segment(
        name="seniors",
        description="55+, voice and TV, insurance and security, shops in stores",
        share=0.14,
        ages=(0.0, 0.0, 0.0, 0.0, 0.35, 0.65),
        urban_tilt=-0.8,
        contracts=(0.20, 0.25, 0.25, 0.30),
        payments=(0.45, 0.05, 0.50, 0.0),
        tenure_months=80,
        data_gb=2,
        voice_min=300,
        broadband=0.50,
        broadband_only=0.12,
        fibre_1g=0.05,
        price_sensitivity=1.2,
        service_issues=1.3,
        digital=0.35,
        app_share=0.25,
        channels=(0.55, 0.05, 0.05, 0.25, 0.10),
        phones=(0.6, 0.35, 0.05),
        business_plan=0.0,
        arpu_norm=37.0,
        affinity={
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
    ),
    Segment(
        name="streamers_gamers",
        description="18-34, fibre at home, gaming, TV bundles, mesh Wi-Fi, big data packs",
        share=0.14,
        ages=(0.40, 0.40, 0.15, 0.05, 0.0, 0.0),
        urban_tilt=0.8,
        contracts=(0.10, 0.45, 0.25, 0.20),
        payments=(0.35, 0.50, 0.15, 0.0),
        tenure_months=36,
        data_gb=45,
        voice_min=90,
        broadband=0.80,
        broadband_only=0.01,
        fibre_1g=0.5,
        price_sensitivity=0.8,
        service_issues=1.0,
        digital=1.8,
        app_share=0.65,
        channels=(0.10, 0.40, 0.40, 0.05, 0.05),
        phones=(0.2, 0.5, 0.3),
        business_plan=0.0,
        arpu_norm=106.0,
        affinity={
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
    ),
)

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
