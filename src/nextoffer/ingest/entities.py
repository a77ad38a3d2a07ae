"""The import format: for each entity, its file, natural key, columns, types and rules."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from nextoffer.domain.contact import SCOPES, TIMEZONE_PATTERN
from nextoffer.domain.contact import SOURCES as CONSENT_SOURCES
from nextoffer.domain.vocabulary import (
    AgeBand,
    Channel,
    ContractType,
    EventType,
    PaymentMethod,
    ProductCategory,
    TransactionType,
)


class Kind(StrEnum):
    """How a column's text is parsed and checked."""

    ID = "id"
    TEXT = "text"
    INT = "int"
    FLOAT = "float"
    MONEY = "money"
    BOOL = "bool"
    DATE = "date"
    TIMESTAMP = "timestamp"
    ENUM = "enum"
    ENUM_LIST = "enum_list"
    ID_LIST = "id_list"


@dataclass(frozen=True)
class Column:
    """One column of an import file."""

    name: str
    kind: Kind
    required: bool = False
    doc: str = ""
    choices: tuple[str, ...] = ()
    min_value: float | None = None
    max_length: int = 200
    references: str | None = None
    default: str | None = None
    future_ok: bool = False
    pattern: str | None = None
    """TEXT only: a regular expression every non-empty value must match (`bad_rule`)..."""
    pattern_hint: str = ""
    """... and the form it describes, for the reason (`name=value|name=value`)."""


@dataclass(frozen=True)
class Entity:
    """One import file kind, loaded into the table of the same name."""

    name: str
    doc: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    open_columns: bool = False
    """Extra columns are kept as custom attributes (customers) instead of being ignored."""

    @property
    def depends_on(self) -> tuple[str, ...]:
        """The entities this one references, so must be loaded first."""
        return tuple(dict.fromkeys(c.references for c in self.columns if c.references))

    @property
    def column_names(self) -> list[str]:
        """The columns in table order."""
        return [c.name for c in self.columns]

    @property
    def required_columns(self) -> list[str]:
        """Columns that must be present in the header and non-empty in every row."""
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> Column:
        """The column called `name`."""
        return next(c for c in self.columns if c.name == name)


def _values(enum: type[StrEnum]) -> tuple[str, ...]:
    return tuple(member.value for member in enum)


def _id(name: str, doc: str, references: str | None = None, required: bool = True) -> Column:
    return Column(name, Kind.ID, required=required, doc=doc, max_length=64, references=references)


def _product(doc: str, required: bool = True) -> Column:
    return _id("product_id", doc, references="products", required=required)


def _entity(noun: str, doc: str, *columns: Column) -> Entity:
    """Entity `<noun>s`, keyed by its natural id `<noun>_id`, which comes first."""
    key = f"{noun}_id"
    return Entity(f"{noun}s", doc, (key,), (_id(key, f"natural id of the {noun}"), *columns))


_CUSTOMER = _id("customer_id", "the customer", references="customers")
# `name=value|name=value`: attribute names as stored (snake_case), values without `|` or `=`.
REQUIRES_ATTRIBUTE_PATTERN = r"^[a-z][a-z0-9_]*=[^|=]+(\|[a-z][a-z0-9_]*=[^|=]+)*$"
_WHEN = Column("ts", Kind.TIMESTAMP, True, "when (ISO-8601; no offset = UTC)")

PRODUCTS = _entity(
    "product",
    "The product catalogue: plans, add-ons, devices and bundles, with eligibility rules.",
    Column("name", Kind.TEXT, required=True, doc="display name"),
    Column("category", Kind.ENUM, True, "product category", _values(ProductCategory)),
    Column("price", Kind.MONEY, True, "monthly price (one-off price for devices)", min_value=0),
    Column("margin", Kind.MONEY, True, "monthly margin; 0 <= margin <= price", min_value=0),
    Column("upfront_price", Kind.MONEY, doc="one-off price", min_value=0, default="0"),
    Column(
        "contract_types",
        Kind.ENUM_LIST,
        doc="contracts allowed to buy it, `|`-separated; empty = any",
        choices=_values(ContractType),
        default="",
    ),
    Column(
        "min_tenure_months",
        Kind.INT,
        doc="minimum tenure to be offered it",
        min_value=0,
        default="0",
    ),
    Column("regions", Kind.TEXT, doc="regions, `|`-separated; empty = any", default=""),
    Column(
        "channels",
        Kind.ENUM_LIST,
        doc="channels it may be offered in, `|`-separated; empty = any",
        choices=_values(Channel),
        default="",
    ),
    Column(
        "requires_category",
        Kind.ENUM,
        doc="a category the customer must already hold (e.g. add-ons need a plan)",
        choices=_values(ProductCategory),
    ),
    Column(
        "is_retention_offer",
        Kind.BOOL,
        doc="offered to customers at churn risk",
        default="false",
    ),
    Column("active", Kind.BOOL, doc="still sold", default="true"),
    Column(
        "requires_products",
        Kind.ID_LIST,
        doc="product ids, `|`-separated: the customer must hold at least one; empty = no rule",
        max_length=1000,
    ),
    Column(
        "requires_attribute",
        Kind.TEXT,
        doc="`name=value` pairs, `|`-separated: the customer's attributes must match all "
        "(e.g. `fiber_available=true`); a customer without the attribute does not qualify",
        max_length=1000,
        pattern=REQUIRES_ATTRIBUTE_PATTERN,
        pattern_hint="name=value pairs separated by |",
    ),
    Column(
        "exclusion_group",
        Kind.TEXT,
        doc="holding one product of the group excludes offering the others (e.g. `internet`)",
        max_length=64,
    ),
    Column(
        "upgrades_from",
        Kind.ID_LIST,
        doc="product ids, `|`-separated: holders of these may still be offered this product "
        "although it is in their exclusion group (an upgrade path, e.g. fiber from dsl)",
        max_length=1000,
    ),
    Column(
        "offer_cost",
        Kind.MONEY,
        doc="what the operator gives away each time a customer takes it as an offer (a "
        "discount, a free month); incremental margin is counted net of it",
        min_value=0,
        default="0",
    ),
)

CUSTOMERS = Entity(
    name="customers",
    doc=(
        "Customer master data: one row per customer, the current snapshot. Any other column "
        "is a custom attribute (see *Custom attributes* below)."
    ),
    key=("customer_id",),
    columns=(
        _id("customer_id", "natural id of the customer"),
        Column("display_name", Kind.TEXT, doc="name shown to sales staff; empty: the id is shown"),
        Column("age_band", Kind.ENUM, doc="age band", choices=_values(AgeBand), default="unknown"),
        Column("region", Kind.TEXT, doc="region code or name", max_length=64, default="unknown"),
        # Required: tenure (a churn driver and a product rule) is counted from it.
        Column("signup_date", Kind.DATE, True, "first day as a customer (YYYY-MM-DD)"),
        # Required: product eligibility is by contract, and both are churn drivers.
        Column("contract_type", Kind.ENUM, True, "contract", _values(ContractType)),
        Column("payment_method", Kind.ENUM, True, "payment method", _values(PaymentMethod)),
        _id("plan_id", "current base plan (a product id)", references="products", required=False),
        Column(
            "arpu",
            Kind.MONEY,
            doc="average revenue per user per month; empty: unknown (not 0)",
            min_value=0,
        ),
        Column("data_gb_month", Kind.FLOAT, doc="mobile data used per month, GB", min_value=0),
        Column("voice_min_month", Kind.FLOAT, doc="voice minutes per month", min_value=0),
        Column(
            "timezone",
            Kind.TEXT,
            doc="IANA time zone for quiet hours (e.g. `Europe/Berlin`); empty: the region's "
            "(NEXTOFFER_REGION_TIMEZONES), else NEXTOFFER_DEFAULT_TIMEZONE",
            max_length=64,
            pattern=TIMEZONE_PATTERN,
            pattern_hint="an IANA time zone name such as Europe/Berlin",
        ),
    ),
    open_columns=True,
)

SUBSCRIPTIONS = _entity(
    "subscription",
    "Holdings: which product each customer holds, from start_date until end_date.",
    _CUSTOMER,
    _product("the product held"),
    Column("start_date", Kind.DATE, True, "first day held (YYYY-MM-DD)"),
    Column(
        "end_date",
        Kind.DATE,
        doc="last day held (may be in the future); empty = still held; >= start_date",
        future_ok=True,
    ),
    Column("monthly_price", Kind.MONEY, doc="price paid per month", min_value=0),
)

TRANSACTIONS = _entity(
    "transaction",
    "Purchases and changes of holdings over time.",
    _CUSTOMER,
    _product("the product"),
    _WHEN,
    Column("type", Kind.ENUM, True, "what happened", _values(TransactionType)),
    Column("amount", Kind.MONEY, True, "amount charged", min_value=0),
    Column("channel", Kind.ENUM, doc="sales channel", choices=_values(Channel)),
)

EVENTS = _entity(
    "event",
    "Engagement, service and offer-response events.",
    _CUSTOMER,
    _WHEN,
    Column("event_type", Kind.ENUM, True, "what happened", _values(EventType)),
    _product("product concerned (offer events)", required=False),
    Column("channel", Kind.ENUM, doc="channel", choices=_values(Channel)),
    Column("session_id", Kind.TEXT, doc="web/app session", max_length=128),
)

CHURN_LABELS = Entity(
    name="churn_labels",
    doc="Observed churn: whether the customer left in the label window starting at as_of.",
    key=("customer_id", "as_of"),
    columns=(
        _CUSTOMER,
        Column("as_of", Kind.DATE, True, "start of the label window (YYYY-MM-DD)"),
        Column("churned", Kind.BOOL, True, "left within the window"),
        Column("churn_date", Kind.DATE, doc="day the customer left; only when churned"),
    ),
)

ARMS = ("treated", "control")
"""An exposure's arm: shown the offers, or held out (logged with the would-have-been answer)."""
EXPOSURE_SOURCES = ("api", "campaign", "import")
"""Where an exposure comes from: served by the API, a campaign export, an operator's history."""

EXPOSURES = Entity(
    name="exposures",
    doc=(
        "Who was served offers (`treated`) or held out of them (`control`, with the answer "
        "treatment would have given), at most once per unit a day: an operator's campaign "
        "history, or what the API recorded. Impact and experiments count outcomes after it."
    ),
    key=("exposure_id",),
    columns=(
        Column(
            "exposure_id",
            Kind.TEXT,
            True,
            "natural id: `<unit>@<YYYY-MM-DD>`, plus `#<experiment_id>` for an experiment",
            max_length=200,
        ),
        _CUSTOMER,
        Column("exposed_at", Kind.TIMESTAMP, True, "when the answer was served (ISO-8601)"),
        Column("arm", Kind.ENUM, True, "shown the offers, or held out", ARMS),
        Column(
            "product_ids",
            Kind.ID_LIST,
            True,
            "offered product ids, best first, `|`-separated (control: the would-have-been "
            "answer, never shown)",
            max_length=1000,
            references="products",
        ),
        Column("experiment_id", Kind.TEXT, doc="the experiment it belongs to", max_length=36),
        Column("variant", Kind.TEXT, doc="the experiment's variant", max_length=64),
        Column(
            "unit_id",
            Kind.TEXT,
            doc="the randomisation unit: the customer id or a session id",
            max_length=200,
        ),
        Column("channel", Kind.ENUM, doc="channel", choices=_values(Channel)),
        Column(
            "source",
            Kind.ENUM,
            doc="served by the API, a campaign export, or imported history",
            choices=EXPOSURE_SOURCES,
            default="import",
        ),
        Column("model_version", Kind.TEXT, doc="the model that ranked the offers", max_length=64),
    ),
)

CONSENT = Entity(
    name="consent",
    doc=(
        "Marketing consent changes, kept as history: each row grants or withdraws one "
        "channel, all contact (`contact`: withdrawn = do not contact) or profiling "
        "(`profiling`: withdrawn = objects to profiling, offered popular products only). "
        "The latest change per customer and channel counts (docs/consent.md)."
    ),
    key=("customer_id", "channel", "changed_at"),
    columns=(
        _CUSTOMER,
        Column("channel", Kind.ENUM, True, "a channel, `contact` or `profiling`", SCOPES),
        Column("granted", Kind.BOOL, True, "true: consent given; false: withdrawn"),
        Column(
            "changed_at",
            Kind.TIMESTAMP,
            True,
            "when the customer gave or withdrew it (ISO-8601; no offset = UTC)",
        ),
        Column(
            "source",
            Kind.ENUM,
            doc="where the change came from",
            choices=CONSENT_SOURCES,
            default="import",
        ),
    ),
)

DO_NOT_CALL = Entity(
    name="do_not_call",
    doc="The do-not-call list: customers never offered anything in outbound calls (telesales).",
    key=("customer_id",),
    columns=(
        _CUSTOMER,
        Column("listed_on", Kind.DATE, doc="day the customer was listed (YYYY-MM-DD)"),
    ),
)

ENTITIES: tuple[Entity, ...] = (
    PRODUCTS,
    CUSTOMERS,
    SUBSCRIPTIONS,
    TRANSACTIONS,
    EVENTS,
    CHURN_LABELS,
    EXPOSURES,
    CONSENT,
    DO_NOT_CALL,
)
"""In load order: every entity comes after the ones it references."""

BY_NAME = {e.name: e for e in ENTITIES}
