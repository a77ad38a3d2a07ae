"""SQLAlchemy 2 models of every table; Alembic migrations are written to match these."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from nextoffer.store.types import UtcDateTime

ID = String(64)
MONEY = Numeric(12, 2)
# JSONB on PostgreSQL: it has equality, which the bulk upsert's "changed?" test needs
# (plain json has none), and it stores keys sorted, as ingest writes them.
ATTRIBUTES = JSON().with_variant(JSONB(), "postgresql")
# Every time column reads back aware UTC on SQLite and PostgreSQL alike (see store.types).
UTC_TIME = UtcDateTime()
# A plain int, bool or date column is declared by its annotation alone (INTEGER, BOOLEAN,
# DATE); floats name Float, since SQLAlchemy maps a bare float to DOUBLE PRECISION.

# Deterministic constraint names so migrations and downgrades work the same on every engine.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with the shared naming convention."""

    metadata = MetaData(naming_convention=NAMING)


class CustomerKeyed:
    """A table with a row per customer (and time): the customer's id leads its primary key."""

    # sort_order puts the mixin's column first, where the migrations have it.
    customer_id: Mapped[str] = mapped_column(
        ForeignKey("customers.customer_id"), primary_key=True, sort_order=-1
    )


class Product(Base):
    """The catalogue: plans, add-ons, devices, bundles, with price, margin and eligibility.

    Eligibility lists are pipe-separated values; empty means "no restriction". The catalogue
    is small (hundreds of rows) and is read whole, so lists in text columns are fine.
    """

    __tablename__ = "products"

    product_id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(32), index=True)
    price: Mapped[Decimal] = mapped_column(MONEY)
    margin: Mapped[Decimal] = mapped_column(MONEY)
    upfront_price: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    contract_types: Mapped[str] = mapped_column(String(200), default="")
    min_tenure_months: Mapped[int] = mapped_column(Integer, default=0)
    regions: Mapped[str] = mapped_column(Text, default="")
    channels: Mapped[str] = mapped_column(String(200), default="")
    requires_category: Mapped[str | None] = mapped_column(String(32))
    is_retention_offer: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Product rules (0006); NULL or empty = no rule. Lists are `|`-separated.
    requires_products: Mapped[str | None] = mapped_column(Text)
    requires_attribute: Mapped[str | None] = mapped_column(Text)
    exclusion_group: Mapped[str | None] = mapped_column(String(64))
    upgrades_from: Mapped[str | None] = mapped_column(Text)
    offer_cost: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0), server_default="0")
    """What making the offer costs (a discount, a gift); incremental margin is net of it (0007)."""


class Customer(Base):
    """Customer master data (the seed's `users` table; `users` is kept for people who log in)."""

    __tablename__ = "customers"

    customer_id: Mapped[str] = mapped_column(ID, primary_key=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    age_band: Mapped[str] = mapped_column(String(8))
    region: Mapped[str] = mapped_column(String(64), index=True)
    signup_date: Mapped[date]
    contract_type: Mapped[str] = mapped_column(String(32))
    payment_method: Mapped[str] = mapped_column(String(32))
    plan_id: Mapped[str | None] = mapped_column(ForeignKey("products.product_id"))
    arpu: Mapped[Decimal | None] = mapped_column(MONEY)
    data_gb_month: Mapped[float | None] = mapped_column(Float)
    voice_min_month: Mapped[float | None] = mapped_column(Float)
    attributes: Mapped[dict[str, Any] | None] = mapped_column(ATTRIBUTES)
    """Custom attributes {name: value} typed by `customer_attribute_schema` (0006)."""
    timezone: Mapped[str | None] = mapped_column(String(64))
    """IANA zone of the customer's quiet hours; NULL: the region's, else the default (0008)."""

    # text_pattern_ops on PostgreSQL: the console's name search is a LIKE 'prefix%', which
    # a default-collation index cannot serve (migration 0004).
    __table_args__ = (
        Index(
            "ix_customers_display_name",
            "display_name",
            postgresql_ops={"display_name": "text_pattern_ops"},
        ),
    )


class Subscription(Base):
    """Which product a customer holds, since when and until when (open end = still held)."""

    __tablename__ = "subscriptions"

    subscription_id: Mapped[str] = mapped_column(ID, primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.customer_id"))
    product_id: Mapped[str] = mapped_column(ForeignKey("products.product_id"))
    start_date: Mapped[date]
    end_date: Mapped[date | None]
    monthly_price: Mapped[Decimal | None] = mapped_column(MONEY)

    __table_args__ = (
        Index("ix_subscriptions_customer_id", "customer_id", "end_date"),
        Index("ix_subscriptions_product_id", "product_id"),
        # Holders of a product today, counted from the index alone (the console, 0004).
        Index("ix_subscriptions_product_end", "product_id", "end_date"),
    )


class Transaction(Base):
    """A purchase or a change of holdings: activation, upgrade, downgrade, cancellation.

    No foreign-key constraints on this and `events`, the two high-volume fact tables: every
    writer checks references in bulk before writing (ingest quarantines `unknown_customer`,
    `unknown_product`), and PostgreSQL's per-row FK triggers would more than double load time.
    """

    __tablename__ = "transactions"

    transaction_id: Mapped[str] = mapped_column(ID, primary_key=True)
    customer_id: Mapped[str] = mapped_column(ID)
    product_id: Mapped[str] = mapped_column(ID)
    ts: Mapped[datetime] = mapped_column(UTC_TIME)
    type: Mapped[str] = mapped_column(String(32))
    amount: Mapped[Decimal] = mapped_column(MONEY)
    channel: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (Index("ix_transactions_customer_ts", "customer_id", "ts"),)


class Event(Base):
    """Engagement, service and offer-response events (web, app, support, impressions...).

    References are checked by writers, not by constraints (see `Transaction`).
    """

    __tablename__ = "events"

    event_id: Mapped[str] = mapped_column(ID, primary_key=True)
    customer_id: Mapped[str] = mapped_column(ID)
    ts: Mapped[datetime] = mapped_column(UTC_TIME)
    event_type: Mapped[str] = mapped_column(String(32))
    product_id: Mapped[str | None] = mapped_column(ID)
    channel: Mapped[str | None] = mapped_column(String(32))
    session_id: Mapped[str | None] = mapped_column(String(128))
    experiment_id: Mapped[str | None] = mapped_column(String(36))
    """The experiment whose variant served the offer this event responds to (API events)."""
    variant: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_events_customer_ts", "customer_id", "ts"),
        Index("ix_events_type_ts", "event_type", "ts"),
        Index("ix_events_experiment_variant", "experiment_id", "variant", "event_type"),
    )


class ChurnLabel(CustomerKeyed, Base):
    """Observed churn: did the customer leave within the label window that starts at as_of."""

    __tablename__ = "churn_labels"

    as_of: Mapped[date] = mapped_column(Date, primary_key=True)
    churned: Mapped[bool]
    churn_date: Mapped[date | None]

    # The latest label window's churn rate, counted from the index alone (the console, 0004).
    __table_args__ = (Index("ix_churn_labels_as_of", "as_of", "churned"),)


class Segment(Base):
    """A customer segment: how it was found and what characterises it."""

    __tablename__ = "segments"

    segment_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    size: Mapped[int]
    centroid: Mapped[dict[str, Any]] = mapped_column(JSON)
    computed_at: Mapped[datetime] = mapped_column(UTC_TIME)


class UserFeatures(CustomerKeyed, Base):
    """Per-customer features for models and serving, as of `as_of`, stamped `computed_at`."""

    __tablename__ = "user_features"

    as_of: Mapped[datetime] = mapped_column(UTC_TIME)
    computed_at: Mapped[datetime] = mapped_column(UTC_TIME)
    segment_id: Mapped[int | None] = mapped_column(Integer, index=True)
    tenure_months: Mapped[float] = mapped_column(Float)
    contract_type: Mapped[str] = mapped_column(String(32))
    payment_method: Mapped[str] = mapped_column(String(32))
    region: Mapped[str] = mapped_column(String(64))
    age_band: Mapped[str] = mapped_column(String(8))
    plan_id: Mapped[str | None] = mapped_column(String(64))
    arpu: Mapped[float | None] = mapped_column(Float)
    data_gb_month: Mapped[float] = mapped_column(Float)
    voice_min_month: Mapped[float] = mapped_column(Float)
    recency_days: Mapped[float | None] = mapped_column(Float)
    frequency_90d: Mapped[int]
    monetary_90d: Mapped[float] = mapped_column(Float)
    monetary_total: Mapped[float] = mapped_column(Float)
    products_held: Mapped[int]
    mobile_held: Mapped[int]
    broadband_held: Mapped[int]
    addons_held: Mapped[int]
    devices_held: Mapped[int]
    bundles_held: Mapped[int]
    support_contacts_90d: Mapped[int]
    engagement_30d: Mapped[int]
    offers_accepted_180d: Mapped[int]


class CustomerAttributeSchema(Base):
    """A custom customer attribute: its kind (how values are typed) and role (what it is for).

    Registered by ingest when a customers file first brings the column (declared in the
    mapping, or inferred from the file's first block); a registered kind is kept after.
    """

    __tablename__ = "customer_attribute_schema"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    role: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(UTC_TIME)


class ContactHistory(Base):
    """Every time an offer was put in front of a customer; contact caps count these rows."""

    __tablename__ = "contact_history"

    contact_id: Mapped[str] = mapped_column(ID, primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.customer_id"))
    product_id: Mapped[str] = mapped_column(ForeignKey("products.product_id"))
    channel: Mapped[str | None] = mapped_column(String(32))
    contacted_at: Mapped[datetime] = mapped_column(UTC_TIME)
    outcome: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (
        Index("ix_contact_history_customer_product", "customer_id", "product_id", "contacted_at"),
    )


class ChurnScore(CustomerKeyed, Base):
    """A churn score for a customer at a time; the history is kept to show risk over time."""

    __tablename__ = "churn_scores"

    scored_at: Mapped[datetime] = mapped_column(UTC_TIME, primary_key=True)
    score: Mapped[float] = mapped_column(Float)
    band: Mapped[str] = mapped_column(String(16))
    model_version: Mapped[str] = mapped_column(String(64))
    top_reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON)

    __table_args__ = (Index("ix_churn_scores_scored_at_band", "scored_at", "band"),)


class JobRun(Base):
    """One run of a job (ingest, features, train...): when, how it ended, what it counted."""

    __tablename__ = "job_runs"

    run_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    job: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UTC_TIME)
    finished_at: Mapped[datetime | None] = mapped_column(UTC_TIME)
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    message: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_job_runs_job_started", "job", "started_at"),)


class QuarantinedRow(Base):
    """A rejected input row with its reason; keyed so a re-run never duplicates it."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    entity: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(Text)
    source_sha256: Mapped[str] = mapped_column(String(64))
    line: Mapped[int]
    reason: Mapped[str] = mapped_column(Text)
    raw: Mapped[str] = mapped_column(Text)
    run_id: Mapped[str] = mapped_column(String(36))
    quarantined_at: Mapped[datetime] = mapped_column(UTC_TIME)

    __table_args__ = (
        UniqueConstraint("source_sha256", "entity", "line", name="uq_quarantine_source_line"),
        Index("ix_quarantine_entity_at", "entity", "quarantined_at"),
    )


class IngestLedgerEntry(Base):
    """A source file the ETL loaded: where from, which content, when, by which run, counts.

    Keyed on (uri, sha256): the same content from the same place is loaded once; a changed
    file (new hash) gets a row of its own when it is loaded again.
    """

    __tablename__ = "ingest_ledger"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    uri: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    # The object's ETag for s3:// sources: an unchanged object is skipped without download.
    etag: Mapped[str | None] = mapped_column(String(200))
    entity: Mapped[str] = mapped_column(String(32))
    run_id: Mapped[str] = mapped_column(String(36))
    loaded_at: Mapped[datetime] = mapped_column(UTC_TIME)
    rows_read: Mapped[int] = mapped_column(BigInteger)
    rows_loaded: Mapped[int] = mapped_column(BigInteger)
    rows_quarantined: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        UniqueConstraint("uri", "sha256", name="uq_ingest_ledger_uri_sha256"),
        Index("ix_ingest_ledger_loaded_at", "loaded_at"),
    )


class User(Base):
    """A person who logs in to the API and the console; the password is an argon2 hash."""

    __tablename__ = "users"

    user_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTC_TIME)


class ApiKey(Base):
    """A machine's API key: only its SHA-256 is stored; `key_id` is the public part."""

    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTC_TIME)
    revoked_at: Mapped[datetime | None] = mapped_column(UTC_TIME)


class Experiment(Base):
    """An A/B experiment: variants (name, strategy, weight) and whether it is running."""

    __tablename__ = "experiments"

    experiment_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    unit: Mapped[str] = mapped_column(String(16))
    variants: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(UTC_TIME)
    stopped_at: Mapped[datetime | None] = mapped_column(UTC_TIME)
    created_by: Mapped[str | None] = mapped_column(String(100))


class PrecomputedOffers(Base):
    """A customer's offers as scored by the last precompute run (the answer chain's 2nd step)."""

    __tablename__ = "precomputed_offers"

    customer_id: Mapped[str] = mapped_column(ID, primary_key=True)
    offers: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    model_version: Mapped[str] = mapped_column(String(64))
    computed_at: Mapped[datetime] = mapped_column(UTC_TIME)


class ControlGroupMember(Base):
    """A customer held out of every offer: the universal control group (0007).

    Membership follows a salted hash of the id against `control_group_share`; this table
    records when each customer entered (and left, when the share shrank), so a changed
    share never rewrites history.
    """

    __tablename__ = "control_group"

    customer_id: Mapped[str] = mapped_column(ID, primary_key=True)
    entered_on: Mapped[date]
    left_on: Mapped[date | None]
    share: Mapped[float] = mapped_column(Float)
    """The control-group share in force when the customer entered."""


class Exposure(Base):
    """A customer (or session) served an answer, treated or held out, at most once a day (0007).

    For the control arm `product_ids` is the answer the treatment would have given: logged,
    never shown, so both arms are measured on the same offers.
    """

    __tablename__ = "exposures"

    exposure_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ID)
    exposed_at: Mapped[datetime] = mapped_column(UTC_TIME)
    arm: Mapped[str] = mapped_column(String(16))
    """`treated` or `control` (the universal control group, or an experiment's control)."""
    product_ids: Mapped[str] = mapped_column(Text)
    """The offered products, best first, `|`-separated."""
    experiment_id: Mapped[str | None] = mapped_column(String(36))
    variant: Mapped[str | None] = mapped_column(String(64))
    unit_id: Mapped[str | None] = mapped_column(String(200))
    """The experiment's randomisation unit: the customer id or the session id."""
    channel: Mapped[str | None] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(16))
    """`api` (served), `campaign` (exported) or `import` (an operator's campaign history)."""
    model_version: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_exposures_customer_at", "customer_id", "exposed_at"),
        Index("ix_exposures_at", "exposed_at"),
        Index("ix_exposures_experiment_variant", "experiment_id", "variant"),
    )


class ImpactResult(Base):
    """One run of the impact job: treated vs control over a period, as a JSON report (0007)."""

    __tablename__ = "impact_results"

    run_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    computed_at: Mapped[datetime] = mapped_column(UTC_TIME)
    window_days: Mapped[int] = mapped_column(Integer)
    period_start: Mapped[date]
    period_end: Mapped[date]
    report: Mapped[dict[str, Any]] = mapped_column(JSON)

    __table_args__ = (Index("ix_impact_results_computed_at", "computed_at"),)


DATA_TABLES = (
    "products",
    "customers",
    "subscriptions",
    "transactions",
    "events",
    "churn_labels",
    "exposures",
    "consent",
    "do_not_call",
)


class AuditRecord(Base):
    """Who read one customer's data or changed something, when, from where (0010).

    Append-only: on PostgreSQL (and SQLite) a trigger refuses UPDATE and DELETE. A customer
    is kept only as a keyed digest (`domain.privacy.customer_digest`), so erasing the
    customer leaves the trail whole without keeping the id.
    """

    __tablename__ = "audit"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTC_TIME)
    actor_kind: Mapped[str] = mapped_column(String(16))
    """`key`, `user` or `cli`."""
    actor_id: Mapped[str] = mapped_column(String(100))
    """The key id, the username, or the operating system's user of a command."""
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str | None] = mapped_column(String(200))
    customer_digest: Mapped[str | None] = mapped_column(String(64))
    address: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)

    __table_args__ = (
        Index("ix_audit_at", "at"),
        Index("ix_audit_customer_at", "customer_digest", "at"),
        Index("ix_audit_actor_at", "actor_id", "at"),
    )


class ErasureEntry(Base):
    """A customer erased on request, as a keyed digest of the id, never the id (0009).

    A copy lives outside the database (VAR_DIR/privacy), since a restore replaces this
    table: `backup restore` reads that copy and erases again whoever it names.
    """

    __tablename__ = "erasure_ledger"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(UTC_TIME)


class ConsentChange(Base):
    """A customer's consent given or withdrawn, for a channel, all contact or profiling (0008).

    The table is the history: rows are only added (an import re-sends the same key), and
    the latest `changed_at` per customer and channel is the consent in force.
    """

    __tablename__ = "consent"

    customer_id: Mapped[str] = mapped_column(ID, primary_key=True)
    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    """A channel, `contact` (withdrawn: do not contact) or `profiling` (withdrawn: objects)."""
    changed_at: Mapped[datetime] = mapped_column(UTC_TIME, primary_key=True)
    granted: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(16))
    """`import`, `api` (PUT /v1/customers/{id}/consent) or `event` (a consent event)."""


class DoNotCall(Base):
    """A customer on the do-not-call list: no offer in outbound calls (0008)."""

    __tablename__ = "do_not_call"

    customer_id: Mapped[str] = mapped_column(ID, primary_key=True)
    listed_on: Mapped[date | None]


class ServingChampion(Base):
    """The champion of each model kind as serving loads it, mirrored from the registry (0011).

    Written by the registry whenever the champion alias moves; `files_url` is the copy of
    the version's model files under the artifact store's `serving/` prefix. Serving reads
    this row and those files, never MLflow.
    """

    __tablename__ = "serving_champions"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    version: Mapped[int]
    files_url: Mapped[str] = mapped_column(Text)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The version's evaluation metrics, for the quality gauges on /metrics."""
    promoted_at: Mapped[datetime] = mapped_column(UTC_TIME)
