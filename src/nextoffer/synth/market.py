"""The synthetic market's vocabularies, contract and channel groups, and sales regions."""

from __future__ import annotations

from dataclasses import dataclass

from nextoffer.domain.vocabulary import (
    AgeBand,
    Channel,
    ContractType,
    PaymentMethod,
    ProductCategory,
)

# The generator's own vocabularies, written out: the import format accepts more (fixed
# voice, TV, cheque, an unknown age band...), and the generated world must not change when
# it does, since model tests are calibrated on it.
CATEGORIES: tuple[ProductCategory, ...] = (
    ProductCategory.MOBILE_PLAN,
    ProductCategory.BROADBAND_PLAN,
    ProductCategory.ADDON,
    ProductCategory.DEVICE,
    ProductCategory.BUNDLE,
)
AGE_BANDS: tuple[AgeBand, ...] = (
    AgeBand.A18_24,
    AgeBand.A25_34,
    AgeBand.A35_44,
    AgeBand.A45_54,
    AgeBand.A55_64,
    AgeBand.A65_PLUS,
)
PAYMENT_METHODS: tuple[PaymentMethod, ...] = (
    PaymentMethod.DIRECT_DEBIT,
    PaymentMethod.CREDIT_CARD,
    PaymentMethod.BANK_TRANSFER,
    PaymentMethod.VOUCHER,
)
CONTRACTS: tuple[ContractType, ...] = tuple(ContractType)
CHANNELS: tuple[Channel, ...] = tuple(Channel)

POSTPAID = (ContractType.MONTH_TO_MONTH, ContractType.ONE_YEAR, ContractType.TWO_YEAR)
PREPAID = (ContractType.PREPAID,)
COMMITTED = (ContractType.ONE_YEAR, ContractType.TWO_YEAR)
RETENTION_CHANNELS = (Channel.CALL_CENTER, Channel.TELESALES, Channel.APP)
DEVICE_CHANNELS = (Channel.RETAIL, Channel.WEB, Channel.APP, Channel.TELESALES)

INSTALMENT_DAYS = 730
"""Devices are paid over 24 months and count as held (not re-bought) for that long."""


@dataclass(frozen=True)
class Region:
    """A sales region: how urban it is, which fixed access it has, how good the network is."""

    name: str
    share: float
    urbanity: float
    fibre: bool
    fixed_wireless: bool
    network_issues: float


REGIONS: tuple[Region, ...] = (
    Region("capital", 0.22, 1.0, True, False, 0.8),
    Region("north-metro", 0.15, 0.9, True, False, 0.9),
    Region("south-metro", 0.14, 0.85, True, False, 1.0),
    Region("coast", 0.11, 0.6, True, False, 1.1),
    Region("lakes", 0.10, 0.4, False, True, 1.3),
    Region("plains", 0.12, 0.2, False, True, 1.5),
    Region("highlands", 0.09, 0.1, False, True, 2.0),
    Region("islands", 0.07, 0.15, False, False, 2.2),
)
FIBRE_REGIONS = tuple(r.name for r in REGIONS if r.fibre)
FIXED_WIRELESS_REGIONS = tuple(r.name for r in REGIONS if r.fixed_wireless)
