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
    cancelling it once held; `term_days` a fixed term after which it ends by itself.
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
    Product("BB-DSL-50", "DSL 50 Mbit", BB, 3000, 1400, contracts=POSTPAID, base_rate=0.0025),
    Product(
        "BB-5G-HOME",
        "5G Home Internet",
        BB,
        3500,
        2000,
        contracts=POSTPAID,
        regions=FIXED_WIRELESS_REGIONS,
        base_rate=0.0025,
    ),
    Product(
        "BB-FIB-300",
        "Fibre 300 Mbit",
        BB,
        4000,
        2200,
        contracts=POSTPAID,
        regions=FIBRE_REGIONS,
        base_rate=0.0035,
    ),
    Product(
        "BB-FIB-1G",
        "Fibre 1 Gbit",
        BB,
        5500,
        3100,
        contracts=POSTPAID,
        regions=FIBRE_REGIONS,
        base_rate=0.0015,
    ),
    # Add-ons.
    Product(
        "ADD-DATA-10",
        "Extra Data 10GB",
        ADD,
        500,
        420,
        requires=MOB,
        base_rate=0.006,
        cancel_rate=0.05,
        blocks=("ADD-DATA-50",),
    ),
    Product(
        "ADD-DATA-50",
        "Extra Data 50GB",
        ADD,
        1200,
        950,
        contracts=POSTPAID,
        requires=MOB,
        base_rate=0.004,
        cancel_rate=0.04,
        blocks=("ADD-DATA-10",),
    ),
    Product(
        "ADD-ROAM-EU",
        "Roaming Pass Europe",
        ADD,
        800,
        550,
        requires=MOB,
        base_rate=0.004,
        cancel_rate=0.06,
        blocks=("ADD-ROAM-WORLD",),
    ),
    Product(
        "ADD-ROAM-WORLD",
        "Roaming Pass World",
        ADD,
        1500,
        900,
        contracts=POSTPAID,
        requires=MOB,
        base_rate=0.0015,
        cancel_rate=0.05,
        blocks=("ADD-ROAM-EU",),
    ),
    Product(
        "ADD-TV",
        "Streaming TV Basic",
        ADD,
        1500,
        600,
        contracts=POSTPAID,
        requires=BB,
        base_rate=0.006,
        cancel_rate=0.025,
    ),
    Product(
        "ADD-TV-SPORT",
        "Sports TV Pack",
        ADD,
        2000,
        500,
        contracts=POSTPAID,
        requires=BB,
        base_rate=0.002,
        cancel_rate=0.04,
    ),
    Product(
        "ADD-MUSIC",
        "Music Streaming",
        ADD,
        1000,
        350,
        requires=MOB,
        base_rate=0.003,
        cancel_rate=0.03,
    ),
    Product(
        "ADD-CLOUD",
        "Cloud Storage 1TB",
        ADD,
        500,
        380,
        contracts=POSTPAID,
        requires=MOB,
        base_rate=0.0025,
        cancel_rate=0.02,
    ),
    Product(
        "ADD-INSURE",
        "Device Insurance",
        ADD,
        900,
        600,
        contracts=POSTPAID,
        requires=MOB,
        base_rate=0.002,
        cancel_rate=0.02,
    ),
    Product(
        "ADD-INTL",
        "International Calls 300 min",
        ADD,
        700,
        520,
        requires=MOB,
        base_rate=0.0025,
        cancel_rate=0.03,
    ),
    Product(
        "ADD-FAMILY",
        "Family Extra Line",
        ADD,
        1500,
        1000,
        contracts=POSTPAID,
        requires=MOB,
        base_rate=0.0015,
        cancel_rate=0.015,
    ),
    Product(
        "ADD-KIDS",
        "Kids Safe Filter",
        ADD,
        300,
        260,
        requires=MOB,
        base_rate=0.0015,
        cancel_rate=0.02,
    ),
    Product(
        "ADD-GAMING",
        "Gaming Boost (low latency)",
        ADD,
        600,
        450,
        contracts=POSTPAID,
        requires=MOB,
        base_rate=0.0015,
        cancel_rate=0.04,
    ),
    Product(
        "ADD-SECURITY",
        "Security Suite",
        ADD,
        400,
        320,
        contracts=POSTPAID,
        requires=MOB,
        base_rate=0.002,
        cancel_rate=0.025,
    ),
    # Devices: price is the one-off price; instalment plans show as a subscription.
    Product(
        "DEV-PHONE-BUDGET",
        "Phone Budget A15",
        DEV,
        17900,
        2500,
        upfront=17900,
        channels=DEVICE_CHANNELS,
        base_rate=0.004,
        term_days=INSTALMENT_DAYS,
    ),
    Product(
        "DEV-PHONE-MID",
        "Phone Mid-range X5",
        DEV,
        44900,
        6000,
        upfront=44900,
        channels=DEVICE_CHANNELS,
        base_rate=0.004,
        term_days=INSTALMENT_DAYS,
    ),
    Product(
        "DEV-PHONE-FLAG",
        "Phone Flagship Pro 16",
        DEV,
        109900,
        12000,
        upfront=109900,
        channels=DEVICE_CHANNELS,
        base_rate=0.002,
        term_days=INSTALMENT_DAYS,
    ),
    Product(
        "DEV-TABLET",
        "Tablet 11 inch",
        DEV,
        39900,
        5500,
        upfront=39900,
        channels=DEVICE_CHANNELS,
        base_rate=0.0015,
        term_days=INSTALMENT_DAYS,
    ),
    Product(
        "DEV-MESH",
        "Mesh Wi-Fi Router 2-pack",
        DEV,
        14900,
        4000,
        upfront=14900,
        channels=DEVICE_CHANNELS,
        requires=BB,
        base_rate=0.002,
        term_days=INSTALMENT_DAYS,
    ),
    Product(
        "DEV-WATCH",
        "Smartwatch LTE",
        DEV,
        29900,
        4500,
        upfront=29900,
        channels=DEVICE_CHANNELS,
        requires=MOB,
        base_rate=0.0015,
        term_days=INSTALMENT_DAYS,
    ),
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
    # Retention offers: free, time-limited, sold by agents to customers at risk.
    Product(
        "RET-LOYALTY",
        "Loyalty Discount 5 per month",
        ADD,
        0,
        0,
        contracts=POSTPAID,
        min_tenure_months=24,
        channels=RETENTION_CHANNELS,
        retention=True,
        base_rate=0.001,
        term_days=365,
    ),
    Product(
        "RET-DATA-BOOST",
        "Loyalty Data Boost 20GB",
        ADD,
        0,
        0,
        min_tenure_months=12,
        channels=RETENTION_CHANNELS,
        requires=MOB,
        retention=True,
        base_rate=0.001,
        term_days=182,
    ),
    Product(
        "RET-TV-3M",
        "TV Free for 3 Months",
        ADD,
        0,
        0,
        contracts=POSTPAID,
        min_tenure_months=6,
        channels=RETENTION_CHANNELS,
        requires=BB,
        retention=True,
        base_rate=0.00075,
        term_days=91,
    ),
    Product(
        "RET-FREE-UPGRADE",
        "Free Phone Upgrade",
        DEV,
        0,
        0,
        contracts=COMMITTED,
        min_tenure_months=18,
        channels=RETENTION_CHANNELS,
        requires=MOB,
        retention=True,
        base_rate=0.00075,
        term_days=INSTALMENT_DAYS,
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
