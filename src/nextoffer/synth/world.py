"""The hidden structure of the synthetic world: segments, customer effects, churn model, dates."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import numpy as np

from nextoffer.synth.catalog import CATEGORIES, REGIONS, Catalog

DEFAULT_END = datetime(2026, 11, 1, tzinfo=UTC)
"""A fixed end instant, so that a seed alone decides the output (never the current date)."""

HISTORY_MONTHS = 24
EVENT_DAYS = 182
LABEL_DAYS = 90
SERVICE_WINDOW_DAYS = 90
FORMAT_VERSION = "1"
DAYS_PER_MONTH = 30.44
MAX_TENURE_DAYS = 3650


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


@dataclass(frozen=True)
class Effect:
    """How observable customer signals move one product's log purchase hazard.

    age: per step of the standardised age band; urban: region urbanity (0..1); usage:
    log(data GB / 10); voice: log(voice minutes / 200); over: log(data / plan allowance),
    clipped to ±2 (re-evaluated every month, since plans change); new: within the first six
    months; tenure: per year of tenure (up to 8).
    """

    age: float = 0.0
    urban: float = 0.0
    usage: float = 0.0
    voice: float = 0.0
    over: float = 0.0
    new: float = 0.0
    tenure: float = 0.0


CUSTOMER_EFFECTS: dict[str, Effect] = {
    "ADD-DATA-10": Effect(over=1.4, new=0.5),
    "ADD-DATA-50": Effect(over=1.6, usage=0.3, new=0.5),
    "RET-DATA-BOOST": Effect(over=0.8),
    "BUN-DUO": Effect(over=0.6, new=0.3),
    "ADD-GAMING": Effect(age=-0.7, usage=0.5, new=0.5),
    "ADD-MUSIC": Effect(age=-0.5, usage=0.3, new=0.5),
    "ADD-TV": Effect(age=0.2, new=0.5),
    "ADD-TV-SPORT": Effect(new=0.3),
    "ADD-INSURE": Effect(age=0.3, new=0.8),
    "ADD-SECURITY": Effect(age=0.3, new=0.4),
    "ADD-ROAM-EU": Effect(age=-0.2, urban=0.4),
    "ADD-ROAM-WORLD": Effect(urban=0.6, voice=0.3),
    "ADD-INTL": Effect(voice=0.9),
    "ADD-CLOUD": Effect(usage=0.2, new=0.3),
    "ADD-FAMILY": Effect(new=0.3),
    "ADD-KIDS": Effect(new=0.3),
    "DEV-WATCH": Effect(age=-0.4, urban=0.3),
    "DEV-TABLET": Effect(age=0.1),
    "DEV-MESH": Effect(urban=0.3, usage=0.3),
    "DEV-PHONE-BUDGET": Effect(tenure=0.08),
    "DEV-PHONE-MID": Effect(tenure=0.08, age=-0.2),
    "DEV-PHONE-FLAG": Effect(tenure=0.08, urban=0.4, usage=0.2),
    "BB-DSL-50": Effect(urban=-0.8, new=0.3),
    "BB-5G-HOME": Effect(urban=-0.5, usage=0.3, new=0.3),
    "BB-FIB-300": Effect(urban=0.5, new=0.3),
    "BB-FIB-1G": Effect(urban=0.8, usage=0.5, new=0.3),
}

PRICE_PENALTY = 0.9
"""Log-hazard lost per unit of price sensitivity times log(1 + monthly price / 10)."""

PURCHASE_SCALE = 2.3
"""Global multiplier on every purchase hazard (tunes transactions per customer)."""


@dataclass(frozen=True)
class ChurnModel:
    """The true churn model: logit p = sum of these terms (all observable at label_as_of).

    contract / payment: added per category; tenure: times exp(-tenure months / 9);
    price: times log(arpu / segment arpu norm), clipped to [-1, 1.5]; support / complaint:
    per event in the 90 days before label_as_of (each capped at 4); products: per held
    subscription beyond the first (capped at 5); bundle / retention: when one is held;
    noise: times a standard-normal, unobserved, per-customer term.
    """

    intercept: float = -2.85
    contract: tuple[float, ...] = (0.9, 1.75, 0.4, 0.0)
    payment: tuple[float, ...] = (0.0, 0.1, 0.25, 0.45)
    tenure: float = 1.5
    tenure_scale_months: float = 9.0
    price: float = 1.2
    support: float = 0.6
    complaint: float = 0.8
    products: float = -0.3
    bundle: float = -0.6
    retention: float = -0.7
    noise: float = 0.3


CHURN = ChurnModel()

FIRST_NAMES = [
    "Aaron",
    "Abigail",
    "Adam",
    "Adrian",
    "Aisha",
    "Alex",
    "Alice",
    "Amelia",
    "Ana",
    "Andrea",
    "Anna",
    "Arjun",
    "Ben",
    "Bianca",
    "Carla",
    "Carlos",
    "Chen",
    "Chloe",
    "Clara",
    "Daniel",
    "David",
    "Diana",
    "Elena",
    "Elias",
    "Ella",
    "Emil",
    "Emma",
    "Eric",
    "Eva",
    "Felix",
    "Fatima",
    "Finn",
    "Grace",
    "Hana",
    "Hannah",
    "Hugo",
    "Ian",
    "Ines",
    "Isaac",
    "Ivan",
    "Jack",
    "Jana",
    "Jonas",
    "Julia",
    "Karim",
    "Kate",
    "Lara",
    "Laura",
    "Leo",
    "Lena",
    "Liam",
    "Lucas",
    "Lucia",
    "Luis",
    "Maja",
    "Marco",
    "Maria",
    "Mark",
    "Marta",
    "Maya",
    "Mila",
    "Nadia",
    "Nina",
    "Noah",
    "Nora",
    "Olga",
    "Oliver",
    "Omar",
    "Oscar",
    "Paul",
    "Petra",
    "Priya",
    "Rafael",
    "Rosa",
    "Ruben",
    "Sara",
    "Simon",
    "Sofia",
    "Tariq",
    "Theo",
    "Tom",
    "Vera",
    "Victor",
    "Yusuf",
    "Zoe",
]

LAST_NAMES = [
    "Adams",
    "Ahmed",
    "Alvarez",
    "Andersen",
    "Baker",
    "Becker",
    "Berg",
    "Brown",
    "Campbell",
    "Carter",
    "Costa",
    "Novak",
    "Dubois",
    "Evans",
    "Fischer",
    "Garcia",
    "Gomez",
    "Green",
    "Hansen",
    "Hoffmann",
    "Horvat",
    "Hughes",
    "Ivanova",
    "Jensen",
    "Johnson",
    "Kaya",
    "Keller",
    "Khan",
    "Kowalski",
    "Larsen",
    "Lee",
    "Lopez",
    "Martin",
    "Meyer",
    "Moreau",
    "Muller",
    "Nguyen",
    "Nielsen",
    "Olsen",
    "Patel",
    "Perez",
    "Petrov",
    "Rossi",
    "Russo",
    "Santos",
    "Schmidt",
    "Schneider",
    "Silva",
    "Singh",
    "Smith",
    "Sousa",
    "Suzuki",
    "Taylor",
    "Thomas",
    "Varga",
    "Wagner",
    "Walker",
    "Weber",
    "Williams",
    "Wilson",
    "Wolf",
    "Young",
    "Zimmermann",
]


@dataclass(frozen=True)
class Timeline:
    """The world's calendar, in days since 1970-01-01 (UTC)."""

    end: datetime
    end_day: int
    history_start: int
    label_day: int
    events_start: int
    steps: tuple[tuple[int, int], ...]

    @classmethod
    def build(cls, end: datetime | None) -> Timeline:
        """The calendar for a world ending at `end` (floored to midnight UTC)."""
        when = DEFAULT_END if end is None else end
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        when = when.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        end_day = (when - epoch).days
        start_month = np.datetime64(when.date(), "M") - np.timedelta64(HISTORY_MONTHS, "M")
        start = int(start_month.astype("datetime64[D]").astype(np.int64))
        label_day = end_day - LABEL_DAYS
        # Monthly steps; label_as_of is also a boundary, so churn is decided on the state
        # exactly at label_as_of.
        month_starts = np.arange(start_month, start_month + HISTORY_MONTHS + 1)
        bounds = {int(m.astype("datetime64[D]").astype(np.int64)) for m in month_starts}
        bounds = {b for b in bounds if start <= b < end_day} | {start, label_day, end_day}
        edges = sorted(bounds)
        return cls(
            end=when,
            end_day=end_day,
            history_start=start,
            label_day=label_day,
            events_start=end_day - EVENT_DAYS,
            steps=tuple(pairwise(edges)),
        )

    @staticmethod
    def iso_day(day: int) -> str:
        """YYYY-MM-DD of a day number."""
        return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=day)).date().isoformat()


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


def effect_vectors(catalog: Catalog) -> dict[str, np.ndarray]:
    """Per customer signal, the per-product coefficient vector."""
    names = ("age", "urban", "usage", "voice", "over", "new", "tenure")
    out = {name: np.zeros(catalog.n) for name in names}
    for pid, effect in CUSTOMER_EFFECTS.items():
        for name in names:
            out[name][catalog.index[pid]] = getattr(effect, name)
    return out


def category_index(name: str) -> int:
    """Position of a product category in the vocabulary."""
    return [c.value for c in CATEGORIES].index(name)
