"""The synthetic product catalogue: every product, the plan ladders and what goes together."""

from __future__ import annotations

from dataclasses import dataclass, field

from nextoffer.domain.vocabulary import Channel, ContractType, ProductCategory
from nextoffer.synth.market import (
    COMMITTED,
    DEVICE_CHANNELS,
    FIBRE_REGIONS,
    FIXED_WIRELESS_REGIONS,
    INSTALMENT_DAYS,
    POSTPAID,
    PREPAID,
    RETENTION_CHANNELS,
)


@dataclass(frozen=True)
class Product:
    """One catalogue entry: what the import file shows, plus how the simulation treats it.

    Money is in cents. `base_rate` is the monthly purchase hazard of an average eligible
    customer before segment and customer effects; `cancel_rate` the monthly hazard of
    cancelling it once held; `term_days` a fixed term after which it ends by itself;
    `offer_cost` what the operator gives away when a customer takes it as an offer.
    """

    product_id: str
    name: str
    category: ProductCategory
    price: int
    margin: int
    upfront: int = 0
    contracts: tuple[ContractType, ...] = ()
    min_tenure_months: int = 0
    regions: tuple[str, ...] = ()
    channels: tuple[Channel, ...] = ()
    requires: ProductCategory | None = None
    retention: bool = False
    active: bool = True
    base_rate: float = 0.0
    cancel_rate: float = 0.0
    term_days: int = 0
    allowance_gb: float = 0.0
    blocks: tuple[str, ...] = field(default=())
    replaces: tuple[str, ...] = field(default=())
    offer_cost: int = 0


MOB, BB, ADD, DEV, BUN = (
    ProductCategory.MOBILE_PLAN,
    ProductCategory.BROADBAND_PLAN,
    ProductCategory.ADDON,
    ProductCategory.DEVICE,
    ProductCategory.BUNDLE,
)
UNLIMITED_GB = 1000.0
PHONES = ("DEV-PHONE-BUDGET", "DEV-PHONE-MID", "DEV-PHONE-FLAG", "RET-FREE-UPGRADE")
RETENTION_ADDONS = ("RET-LOYALTY", "RET-DATA-BOOST", "RET-TV-3M")
BROADBAND = ("BB-DSL-50", "BB-5G-HOME", "BB-FIB-300", "BB-FIB-1G")
DATA_PACKS = ("ADD-DATA-10", "ADD-DATA-50")
ROAMING_PASSES = ("ADD-ROAM-EU", "ADD-ROAM-WORLD")
EXCLUSIVE_ADDONS = (DATA_PACKS, ROAMING_PASSES)
"""Add-ons of which a customer holds at most one: each blocks the others of its group."""


def _broadband(
    pid: str, name: str, price: int, margin: int, rate: float, regions: tuple[str, ...] = ()
) -> Product:
    return Product(
        pid, name, BB, price, margin, contracts=POSTPAID, regions=regions, base_rate=rate
    )


def _addon(
    pid: str,
    name: str,
    price: int,
    margin: int,
    requires: ProductCategory,
    rate: float,
    cancel_rate: float,
    contracts: tuple[ContractType, ...] = (),
) -> Product:
    blocks = tuple(other for g in EXCLUSIVE_ADDONS if pid in g for other in g if other != pid)
    return Product(
        pid,
        name,
        ADD,
        price,
        margin,
        contracts=contracts,
        requires=requires,
        base_rate=rate,
        cancel_rate=cancel_rate,
        blocks=blocks,
    )


def _device(
    pid: str,
    name: str,
    price: int,
    margin: int,
    rate: float,
    requires: ProductCategory | None = None,
) -> Product:
    # Paid over the instalment term: the whole price shows as the upfront price.
    return Product(
        pid,
        name,
        DEV,
        price,
        margin,
        upfront=price,
        channels=DEVICE_CHANNELS,
        requires=requires,
        base_rate=rate,
        term_days=INSTALMENT_DAYS,
    )


def _retention(
    pid: str,
    name: str,
    category: ProductCategory,
    requires: ProductCategory | None,
    min_tenure_months: int,
    rate: float,
    term_days: int,
    contracts: tuple[ContractType, ...],
    offer_cost: int,
) -> Product:
    return Product(
        pid,
        name,
        category,
        0,
        0,
        contracts=contracts,
        min_tenure_months=min_tenure_months,
        channels=RETENTION_CHANNELS,
        requires=requires,
        retention=True,
        base_rate=rate,
        term_days=term_days,
        offer_cost=offer_cost,
    )


PRODUCTS: tuple[Product, ...] = (
    # Mobile plans: changed by upgrade/downgrade, never bought as a second line.
    Product("MOB-PRE-S", "Prepaid Start 5GB", MOB, 1000, 680, contracts=PREPAID, allowance_gb=5),
    Product("MOB-PRE-L", "Prepaid Max 25GB", MOB, 2000, 1300, contracts=PREPAID, allowance_gb=25),
    Product("MOB-S", "Mobile S 10GB", MOB, 2000, 1350, contracts=POSTPAID, allowance_gb=10),
    Product("MOB-M", "Mobile M 40GB", MOB, 3000, 1950, contracts=POSTPAID, allowance_gb=40),
    Product("MOB-L", "Mobile L 100GB", MOB, 4000, 2500, contracts=POSTPAID, allowance_gb=100),
    Product(
        "MOB-UNL",
        "Mobile Unlimited",
        MOB,
        5500,
        3200,
        contracts=POSTPAID,
        allowance_gb=UNLIMITED_GB,
    ),
    Product(
        "MOB-BIZ",
        "Business Unlimited Pro",
        MOB,
        6500,
        4000,
        contracts=COMMITTED,
        channels=(Channel.RETAIL, Channel.WEB, Channel.TELESALES),
        allowance_gb=UNLIMITED_GB,
    ),
    Product(
        "MOB-LEGACY",
        "Mobile Classic 5GB (legacy)",
        MOB,
        2500,
        1700,
        contracts=POSTPAID,
        active=False,
        allowance_gb=5,
    ),
    # Broadband: a mobile customer adding it is an activation; fibre only where it is built.
    # (id, name, price, margin, purchase rate[, regions])
    _broadband("BB-DSL-50", "DSL 50 Mbit", 3000, 1400, 0.0025),
    _broadband("BB-5G-HOME", "5G Home Internet", 3500, 2000, 0.0025, FIXED_WIRELESS_REGIONS),
    _broadband("BB-FIB-300", "Fibre 300 Mbit", 4000, 2200, 0.0035, FIBRE_REGIONS),
    _broadband("BB-FIB-1G", "Fibre 1 Gbit", 5500, 3100, 0.0015, FIBRE_REGIONS),
    # Add-ons: (id, name, price, margin, plan required, purchase rate, cancel rate[, contracts]).
    _addon("ADD-DATA-10", "Extra Data 10GB", 500, 420, MOB, 0.006, 0.05),
    _addon("ADD-DATA-50", "Extra Data 50GB", 1200, 950, MOB, 0.004, 0.04, POSTPAID),
    _addon("ADD-ROAM-EU", "Roaming Pass Europe", 800, 550, MOB, 0.004, 0.06),
    _addon("ADD-ROAM-WORLD", "Roaming Pass World", 1500, 900, MOB, 0.0015, 0.05, POSTPAID),
    _addon("ADD-TV", "Streaming TV Basic", 1500, 600, BB, 0.006, 0.025, POSTPAID),
    _addon("ADD-TV-SPORT", "Sports TV Pack", 2000, 500, BB, 0.002, 0.04, POSTPAID),
    _addon("ADD-MUSIC", "Music Streaming", 1000, 350, MOB, 0.003, 0.03),
    _addon("ADD-CLOUD", "Cloud Storage 1TB", 500, 380, MOB, 0.0025, 0.02, POSTPAID),
    _addon("ADD-INSURE", "Device Insurance", 900, 600, MOB, 0.002, 0.02, POSTPAID),
    _addon("ADD-INTL", "International Calls 300 min", 700, 520, MOB, 0.0025, 0.03),
    _addon("ADD-FAMILY", "Family Extra Line", 1500, 1000, MOB, 0.0015, 0.015, POSTPAID),
    _addon("ADD-KIDS", "Kids Safe Filter", 300, 260, MOB, 0.0015, 0.02),
    _addon("ADD-GAMING", "Gaming Boost (low latency)", 600, 450, MOB, 0.0015, 0.04, POSTPAID),
    _addon("ADD-SECURITY", "Security Suite", 400, 320, MOB, 0.002, 0.025, POSTPAID),
    # Devices: price is the one-off price; instalment plans show as a subscription.
    # (id, name, price, margin, purchase rate)
    _device("DEV-PHONE-BUDGET", "Phone Budget A15", 17900, 2500, 0.004),
    _device("DEV-PHONE-MID", "Phone Mid-range X5", 44900, 6000, 0.004),
    _device("DEV-PHONE-FLAG", "Phone Flagship Pro 16", 109900, 12000, 0.002),
    _device("DEV-TABLET", "Tablet 11 inch", 39900, 5500, 0.0015),
    _device("DEV-MESH", "Mesh Wi-Fi Router 2-pack", 14900, 4000, 0.002, requires=BB),
    _device("DEV-WATCH", "Smartwatch LTE", 29900, 4500, 0.0015, requires=MOB),
    # Bundles: priced as what they add on top of the plan they require; they absorb the
    # add-ons they contain (buying one ends those).
    Product(
        "BUN-DUO",
        "Home and Mobile Duo (shared 50GB)",
        BUN,
        1500,
        900,
        contracts=POSTPAID,
        requires=BB,
        base_rate=0.002,
        cancel_rate=0.01,
        replaces=DATA_PACKS,
    ),
    Product(
        "BUN-FAMILY",
        "Family Bundle (3 lines + shared 100GB)",
        BUN,
        3500,
        2200,
        contracts=POSTPAID,
        requires=MOB,
        base_rate=0.001,
        cancel_rate=0.01,
        replaces=("ADD-FAMILY", "ADD-KIDS"),
    ),
    Product(
        "BUN-TV",
        "TV and Entertainment Bundle",
        BUN,
        3000,
        1200,
        contracts=POSTPAID,
        requires=BB,
        base_rate=0.0015,
        cancel_rate=0.01,
        replaces=("ADD-TV", "ADD-TV-SPORT", "ADD-MUSIC"),
    ),
    # Retention offers: free, time-limited, sold by agents to customers at risk. Their offer
    # cost is a month of what the operator gives away, on the footing of (monthly) margin.
    # (id, name, category, plan required, min tenure months, purchase rate, term days,
    # contracts, offer cost)
    _retention(
        "RET-LOYALTY", "Loyalty Discount 5 per month", ADD, None, 24, 0.001, 365, POSTPAID, 500
    ),
    _retention("RET-DATA-BOOST", "Loyalty Data Boost 20GB", ADD, MOB, 12, 0.001, 182, (), 300),
    _retention("RET-TV-3M", "TV Free for 3 Months", ADD, BB, 6, 0.00075, 91, POSTPAID, 1500),
    _retention(
        "RET-FREE-UPGRADE",
        "Free Phone Upgrade",
        DEV,
        MOB,
        18,
        0.00075,
        INSTALMENT_DAYS,
        COMMITTED,
        4000,
    ),
)

PLAN_UP: dict[str, str] = {
    "MOB-PRE-S": "MOB-PRE-L",
    "MOB-S": "MOB-M",
    "MOB-LEGACY": "MOB-M",
    "MOB-M": "MOB-L",
    "MOB-L": "MOB-UNL",
    "MOB-UNL": "MOB-BIZ",
    "BB-FIB-300": "BB-FIB-1G",
}
"""The next tier up; DSL goes to fibre or 5G depending on the region (see the simulation)."""

PLAN_DOWN: dict[str, str] = {
    "MOB-PRE-L": "MOB-PRE-S",
    "MOB-M": "MOB-S",
    "MOB-LEGACY": "MOB-S",
    "MOB-L": "MOB-M",
    "MOB-UNL": "MOB-L",
    "MOB-BIZ": "MOB-UNL",
    "BB-FIB-1G": "BB-FIB-300",
    "BB-FIB-300": "BB-DSL-50",
    "BB-5G-HOME": "BB-DSL-50",
}

COMPLEMENTS: tuple[tuple[str, str, float], ...] = (
    # (held, bought, log-multiplier on the purchase hazard): what goes with what.
    ("BB-DSL-50", "DEV-MESH", 0.3),
    ("BB-FIB-300", "DEV-MESH", 0.8),
    ("BB-FIB-1G", "DEV-MESH", 1.2),
    ("BB-FIB-1G", "ADD-GAMING", 0.7),
    ("BB-FIB-1G", "BUN-TV", 0.5),
    ("BB-5G-HOME", "DEV-MESH", 0.5),
    ("ADD-TV", "ADD-TV-SPORT", 1.3),
    ("ADD-TV", "BUN-TV", 1.2),
    ("ADD-TV-SPORT", "BUN-TV", 1.0),
    ("ADD-MUSIC", "BUN-TV", 0.5),
    ("DEV-PHONE-BUDGET", "ADD-INSURE", 1.0),
    ("DEV-PHONE-MID", "ADD-INSURE", 1.5),
    ("DEV-PHONE-FLAG", "ADD-INSURE", 2.0),
    ("RET-FREE-UPGRADE", "ADD-INSURE", 1.2),
    ("DEV-PHONE-MID", "DEV-WATCH", 0.5),
    ("DEV-PHONE-FLAG", "DEV-WATCH", 0.9),
    ("DEV-PHONE-FLAG", "ADD-CLOUD", 0.6),
    ("DEV-TABLET", "ADD-CLOUD", 0.6),
    ("DEV-TABLET", "ADD-SECURITY", 0.5),
    ("ADD-FAMILY", "ADD-KIDS", 1.2),
    ("ADD-FAMILY", "BUN-FAMILY", 1.5),
    ("ADD-KIDS", "BUN-FAMILY", 0.8),
    ("ADD-KIDS", "DEV-TABLET", 0.6),
    ("ADD-GAMING", "DEV-MESH", 0.7),
    ("ADD-GAMING", "ADD-DATA-50", 0.4),
    ("ADD-DATA-10", "BUN-DUO", 0.7),
    ("ADD-DATA-50", "BUN-DUO", 0.9),
    ("ADD-ROAM-EU", "ADD-INTL", 0.5),
    ("ADD-ROAM-WORLD", "ADD-INTL", 0.5),
    ("MOB-BIZ", "ADD-ROAM-WORLD", 0.8),
    ("MOB-BIZ", "ADD-CLOUD", 0.5),
    ("MOB-UNL", "ADD-MUSIC", 0.3),
)
