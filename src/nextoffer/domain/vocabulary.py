"""The closed vocabularies of the import format: categories, contracts, channels, event types."""

from __future__ import annotations

from enum import StrEnum

ID_PATTERN = r"^[A-Za-z0-9._:@-]{1,64}$"
"""What an id (customer, product, event) may look like, wherever one comes in."""


class ProductCategory(StrEnum):
    """What kind of thing a product is; drives eligibility and holdings features."""

    MOBILE_PLAN = "mobile_plan"
    BROADBAND_PLAN = "broadband_plan"
    ADDON = "addon"
    DEVICE = "device"
    BUNDLE = "bundle"
    FIXED_VOICE = "fixed_voice"
    TV = "tv"
    SECURITY = "security"
    OTHER = "other"


class ContractType(StrEnum):
    """How a customer is bound; month-to-month churns most (a planted driver in synth)."""

    PREPAID = "prepaid"
    MONTH_TO_MONTH = "month_to_month"
    ONE_YEAR = "one_year"
    TWO_YEAR = "two_year"


class PaymentMethod(StrEnum):
    """How a customer pays."""

    DIRECT_DEBIT = "direct_debit"
    CREDIT_CARD = "credit_card"
    BANK_TRANSFER = "bank_transfer"
    VOUCHER = "voucher"
    CHEQUE = "cheque"
    OTHER = "other"


class AgeBand(StrEnum):
    """Age in bands, as CRM systems usually export it; `unknown` when an export has none."""

    A18_24 = "18-24"
    A25_34 = "25-34"
    A35_44 = "35-44"
    A45_54 = "45-54"
    A55_64 = "55-64"
    A65_PLUS = "65+"
    UNKNOWN = "unknown"


class Channel(StrEnum):
    """Where a sale or a contact happens."""

    RETAIL = "retail"
    WEB = "web"
    APP = "app"
    CALL_CENTER = "call_center"
    TELESALES = "telesales"


class TransactionType(StrEnum):
    """A change to what a customer holds, or a one-off purchase."""

    ACTIVATION = "activation"
    UPGRADE = "upgrade"
    DOWNGRADE = "downgrade"
    PURCHASE = "purchase"
    CANCELLATION = "cancellation"


class EventType(StrEnum):
    """Engagement, service and offer-response events."""

    WEB_VISIT = "web_visit"
    APP_LOGIN = "app_login"
    SUPPORT_CALL = "support_call"
    NETWORK_COMPLAINT = "network_complaint"
    OFFER_IMPRESSION = "offer_impression"
    OFFER_CLICK = "offer_click"
    OFFER_ACCEPT = "offer_accept"
    OFFER_DECLINE = "offer_decline"


SERVICE_ISSUE_EVENTS = (EventType.SUPPORT_CALL, EventType.NETWORK_COMPLAINT)
ENGAGEMENT_EVENTS = (EventType.WEB_VISIT, EventType.APP_LOGIN)
