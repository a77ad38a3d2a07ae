"""The console's SQL: indexed aggregates and keyset pages that stay fast at a million customers.

No function here reads a whole large table into Python. Counts go through indexes
(`ix_events_type_ts`, `ix_churn_scores_scored_at_band`, the console indexes of migration
0004), per-customer reads through the per-customer indexes, and lists are pages: keyset
(`WHERE key < last ORDER BY key DESC LIMIT n`) for the growing tables, so page 1 000 costs
what page 1 costs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Date,
    Engine,
    and_,
    case,
    cast,
    func,
    or_,
    select,
)
from sqlalchemy.orm import Session

from nextoffer.domain.vocabulary import EventType
from nextoffer.serving.insights import ProductView, product_view
from nextoffer.store.schema import (
    ChurnLabel,
    ChurnScore,
    Customer,
    Event,
    JobRun,
    Product,
    QuarantinedRow,
    Subscription,
    Transaction,
)

OFFER_EVENTS = (
    EventType.OFFER_IMPRESSION.value,
    EventType.OFFER_CLICK.value,
    EventType.OFFER_ACCEPT.value,
    EventType.OFFER_DECLINE.value,
)
HIGH_BAND = "high"

# Job names as recorded in job_runs: the CLI and the API name the same work differently.
ETL_JOBS = ("ingest", "etl")
TRAINING_JOBS = ("train", "training")
BACKUP_JOBS = ("backup",)
FRESHNESS_JOBS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ETL / ingest", ETL_JOBS),
    ("features", ("features",)),
    ("training", TRAINING_JOBS),
    ("precompute", ("precompute",)),
    ("backup", BACKUP_JOBS),
    ("backup verify", ("backup_verify",)),
)


def utc(value: datetime) -> datetime:
    """SQLite hands stored UTC times back naive; everything shown is aware."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _utc_day(column: Any, dialect: str) -> ColumnElement[Any]:
    """The UTC calendar day of a timestamp column, in SQL."""
    if dialect == "postgresql":
        return cast(func.timezone("UTC", column), Date)
    # SQLite keeps UTC times as 'YYYY-MM-DD HH:MM:SS' text; date() takes the day part.
    return func.date(column)


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


# --- Overview -------------------------------------------------------------------------


@dataclass(frozen=True)
class DayRates:
    """Offer events of one UTC day and the rates they give."""

    day: date
    impressions: int
    clicks: int
    accepts: int
    declines: int

    @property
    def ctr(self) -> float | None:
        """Clicks per impression, None without impressions."""
        return _rate(self.clicks, self.impressions)

    @property
    def acceptance(self) -> float | None:
        """Accepts per impression, None without impressions."""
        return _rate(self.accepts, self.impressions)


@dataclass(frozen=True)
class OfferRates:
    """Offer events since `since`, in total and per day (every day present, zeros included)."""

    since: datetime
    days: list[DayRates]
    impressions: int
    clicks: int
    accepts: int
    declines: int

    @property
    def ctr(self) -> float | None:
        """Clicks per impression over the window."""
        return _rate(self.clicks, self.impressions)

    @property
    def acceptance(self) -> float | None:
        """Accepts per impression over the window: the overview's acceptance rate."""
        return _rate(self.accepts, self.impressions)


def offer_rates(engine: Engine, now: datetime, days: int = 30) -> OfferRates:
    """Impressions, clicks, accepts and declines since `now - days`, live from `events`.

    One grouped range scan per event type on `ix_events_type_ts (event_type, ts)`: no cache
    and no batch job in between, so an accept shows in the rate on the next page load.
    """
    since = now - timedelta(days=days)
    day = _utc_day(Event.ts, engine.dialect.name).label("day")
    query = (
        select(day, Event.event_type, func.count().label("n"))
        .where(Event.event_type.in_(OFFER_EVENTS), Event.ts >= since)
        .group_by(day, Event.event_type)
    )
    counts: dict[date, dict[str, int]] = {}
    with engine.connect() as conn:
        for row in conn.execute(query):
            counts.setdefault(_as_date(row.day), {})[row.event_type] = int(row.n)
    first = since.astimezone(UTC).date()
    last = now.astimezone(UTC).date()
    series = []
    for offset in range((last - first).days + 1):
        current = first + timedelta(days=offset)
        found = counts.get(current, {})
        series.append(
            DayRates(
                current,
                found.get(EventType.OFFER_IMPRESSION.value, 0),
                found.get(EventType.OFFER_CLICK.value, 0),
                found.get(EventType.OFFER_ACCEPT.value, 0),
                found.get(EventType.OFFER_DECLINE.value, 0),
            )
        )
    return OfferRates(
        since=since,
        days=series,
        impressions=sum(d.impressions for d in series),
        clicks=sum(d.clicks for d in series),
        accepts=sum(d.accepts for d in series),
        declines=sum(d.declines for d in series),
    )


@dataclass(frozen=True)
class Totals:
    """How big the world is: customers and catalogue."""

    customers: int
    products: int
    active_products: int


def totals(engine: Engine) -> Totals:
    """Customers (primary-key count) and products, active and all (a small table)."""
    with engine.connect() as conn:
        customers = conn.execute(select(func.count()).select_from(Customer)).scalar_one()
        products, active = conn.execute(
            select(func.count(), func.count(case((Product.active.is_(True), 1))))
        ).one()
    return Totals(int(customers), int(products), int(active))


@dataclass(frozen=True)
class ChurnSummary:
    """The latest churn scoring by band, revenue at risk, and the last observed churn rate."""

    scored_at: datetime | None
    bands: dict[str, int]
    revenue_at_risk: float
    label_as_of: date | None
    labelled: int
    churned: int

    @property
    def scored(self) -> int:
        """Customers in the latest scoring."""
        return sum(self.bands.values())

    @property
    def high_risk(self) -> int:
        """Customers in the high band of the latest scoring."""
        return self.bands.get(HIGH_BAND, 0)

    @property
    def churn_rate(self) -> float | None:
        """Share of labelled customers who left in the latest label window."""
        return _rate(self.churned, self.labelled)


def churn_marks(engine: Engine) -> tuple[datetime | None, date | None]:
    """(latest scoring instant, latest label date): what `churn_summary` depends on.

    Two index-top reads, so a caller can keep a summary until either moves.
    """
    with engine.connect() as conn:
        scored_at = conn.execute(select(func.max(ChurnScore.scored_at))).scalar_one_or_none()
        as_of = conn.execute(select(func.max(ChurnLabel.as_of))).scalar_one_or_none()
    return (
        utc(scored_at) if scored_at is not None else None,
        _as_date(as_of) if as_of is not None else None,
    )


def churn_summary(engine: Engine) -> ChurnSummary:
    """Bands and revenue at risk of the latest scoring, and the latest label window's rate.

    The latest scoring's instant comes from the top of `ix_churn_scores_scored_at_band`; its
    bands are an index range count; revenue at risk is the monthly ARPU of its high-band
    customers (a primary-key join). The churn rate counts the newest `as_of` of
    `churn_labels` through `ix_churn_labels_as_of` (migration 0004).
    """
    with engine.connect() as conn:
        scored_at = conn.execute(select(func.max(ChurnScore.scored_at))).scalar_one_or_none()
        bands: dict[str, int] = {}
        revenue = 0.0
        if scored_at is not None:
            rows = conn.execute(
                select(ChurnScore.band, func.count())
                .where(ChurnScore.scored_at == scored_at)
                .group_by(ChurnScore.band)
            )
            bands = {str(band): int(n) for band, n in rows}
            revenue = float(
                conn.execute(
                    select(func.coalesce(func.sum(Customer.arpu), 0))
                    .select_from(ChurnScore)
                    .join(Customer, Customer.customer_id == ChurnScore.customer_id)
                    .where(ChurnScore.scored_at == scored_at, ChurnScore.band == HIGH_BAND)
                ).scalar_one()
            )
        as_of = conn.execute(select(func.max(ChurnLabel.as_of))).scalar_one_or_none()
        labelled = churned = 0
        if as_of is not None:
            labelled, churned = conn.execute(
                select(func.count(), func.count(case((ChurnLabel.churned.is_(True), 1)))).where(
                    ChurnLabel.as_of == as_of
                )
            ).one()
    return ChurnSummary(
        scored_at=utc(scored_at) if scored_at is not None else None,
        bands=bands,
        revenue_at_risk=revenue,
        label_as_of=_as_date(as_of) if as_of is not None else None,
        labelled=int(labelled),
        churned=int(churned),
    )


# --- Job runs -------------------------------------------------------------------------


@dataclass(frozen=True)
class RunView:
    """One job run as the console lists it."""

    run_id: str
    job: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    counts: dict[str, Any]
    message: str | None

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to end; None while unfinished."""
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


def _run(row: Any) -> RunView:
    counts = row.counts if isinstance(row.counts, dict) else {}
    return RunView(
        run_id=row.run_id,
        job=row.job,
        status=row.status,
        started_at=utc(row.started_at),
        finished_at=utc(row.finished_at) if row.finished_at is not None else None,
        counts=counts,
        message=row.message,
    )


def latest_run(engine: Engine, jobs: Sequence[str], status: str | None = None) -> RunView | None:
    """The newest run of any of `jobs` (with `status` when given), or None."""
    query = select(JobRun).where(JobRun.job.in_(jobs)).order_by(JobRun.started_at.desc()).limit(1)
    if status is not None:
        query = query.where(JobRun.status == status)
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return None if row is None else _run(row)


def runs_page(
    engine: Engine,
    *,
    job: str | None = None,
    before: tuple[datetime, str] | None = None,
    limit: int = 25,
) -> list[RunView]:
    """Runs newest first, `limit` of them, after the (started_at, run_id) key `before`."""
    query = select(JobRun).order_by(JobRun.started_at.desc(), JobRun.run_id.desc()).limit(limit)
    if job is not None:
        query = query.where(JobRun.job == job)
    if before is not None:
        started, run_id = before
        query = query.where(
            or_(
                JobRun.started_at < started,
                and_(JobRun.started_at == started, JobRun.run_id < run_id),
            )
        )
    with engine.connect() as conn:
        return [_run(row) for row in conn.execute(query)]


def job_names(engine: Engine) -> list[str]:
    """Every job name that has a run (for the filter)."""
    with engine.connect() as conn:
        return sorted(str(n) for n in conn.execute(select(JobRun.job).distinct()).scalars())


# --- Quarantine -----------------------------------------------------------------------


@dataclass(frozen=True)
class QuarantineView:
    """A rejected input row with its reason."""

    id: int
    entity: str
    source: str
    line: int
    reason: str
    raw: str
    run_id: str
    quarantined_at: datetime


QUARANTINE_COLUMNS = (
    "id",
    "entity",
    "source",
    "line",
    "reason",
    "raw",
    "run_id",
    "quarantined_at",
)


def _quarantined(row: Any) -> QuarantineView:
    return QuarantineView(
        id=int(row.id),
        entity=row.entity,
        source=row.source,
        line=int(row.line),
        reason=row.reason,
        raw=row.raw,
        run_id=row.run_id,
        quarantined_at=utc(row.quarantined_at),
    )


def quarantine_counts(engine: Engine) -> dict[str, int]:
    """Quarantined rows per entity (an index-only count on `ix_quarantine_entity_at`)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(QuarantinedRow.entity, func.count())
            .group_by(QuarantinedRow.entity)
            .order_by(QuarantinedRow.entity)
        )
        return {str(entity): int(n) for entity, n in rows}


def quarantine_page(
    engine: Engine, *, entity: str | None = None, before_id: int | None = None, limit: int = 50
) -> list[QuarantineView]:
    """Quarantined rows newest first by id, after the id `before_id`."""
    query = select(QuarantinedRow).order_by(QuarantinedRow.id.desc()).limit(limit)
    if entity:
        query = query.where(QuarantinedRow.entity == entity)
    if before_id is not None:
        query = query.where(QuarantinedRow.id < before_id)
    with engine.connect() as conn:
        return [_quarantined(row) for row in conn.execute(query)]


def quarantine_rows(
    engine: Engine, *, entity: str | None = None, chunk: int = 2000
) -> Iterator[QuarantineView]:
    """Every quarantined row by id, read `chunk` rows per query (for the CSV download).

    A connection is held per chunk, not for the whole download: a slow client never keeps
    one from the pool.
    """
    after = 0
    while True:
        query = (
            select(QuarantinedRow)
            .where(QuarantinedRow.id > after)
            .order_by(QuarantinedRow.id)
            .limit(chunk)
        )
        if entity:
            query = query.where(QuarantinedRow.entity == entity)
        with engine.connect() as conn:
            rows = [_quarantined(row) for row in conn.execute(query)]
        yield from rows
        if len(rows) < chunk:
            return
        after = rows[-1].id


# --- Customers ------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomerHit:
    """A search result."""

    customer_id: str
    display_name: str
    region: str
    contract_type: str


def name_variants(text: str) -> list[str]:
    """The spellings of a typed name prefix that are searched: as typed, lower, Title, UPPER.

    Case-insensitive matching through a plain index: each spelling is one index range, so
    "hana hu" finds "Hana Hughes". A name cased unusually ("McDonald") is found when typed
    with its own capitals.
    """
    typed = " ".join(text.split())
    variants = [typed, typed.lower(), typed.title(), typed.upper(), typed.capitalize()]
    return [v for i, v in enumerate(variants) if v and v not in variants[:i]]


def search_customers(
    engine: Engine, text: str, *, after: tuple[str, str] | None = None, limit: int = 25
) -> list[CustomerHit]:
    """Customers whose name starts with `text` (see `name_variants`), by name then id.

    Every spelling is a prefix range on `ix_customers_display_name`: LIKE 'prefix%' on
    PostgreSQL, whose index has the pattern operator class (migration 0004), and a plain
    range on SQLite, which compares text bytewise. Pages are keyset: `after` is the last
    (display_name, customer_id) shown.
    """
    name = Customer.display_name
    spellings = name_variants(text)
    if not spellings:
        return []
    matches: list[ColumnElement[bool]]
    if engine.dialect.name == "postgresql":
        matches = [name.like(_like_escape(v) + "%", escape="\\") for v in spellings]
    else:
        matches = [and_(name >= v, name < v + "\U0010ffff") for v in spellings]
    query = (
        select(Customer.customer_id, name, Customer.region, Customer.contract_type)
        .where(or_(*matches))
        .order_by(name, Customer.customer_id)
        .limit(limit)
    )
    if after is not None:
        key, customer_id = after
        query = query.where(or_(name > key, and_(name == key, Customer.customer_id > customer_id)))
    with engine.connect() as conn:
        return [
            CustomerHit(r.customer_id, r.display_name, r.region, r.contract_type)
            for r in conn.execute(query)
        ]


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def customer_exists(engine: Engine, customer_id: str) -> bool:
    """True when the id is a customer's (a primary-key lookup)."""
    with engine.connect() as conn:
        found = conn.execute(
            select(Customer.customer_id).where(Customer.customer_id == customer_id)
        ).first()
    return found is not None


@dataclass(frozen=True)
class Profile:
    """A customer's master data and the name of their plan."""

    customer_id: str
    display_name: str
    age_band: str
    region: str
    signup_date: date
    contract_type: str
    payment_method: str
    plan_id: str | None
    plan_name: str | None
    arpu: float
    data_gb_month: float | None
    voice_min_month: float | None


def profile(engine: Engine, customer_id: str) -> Profile | None:
    """The customer's row and plan name, or None for an unknown id."""
    query = (
        select(Customer, Product.name.label("plan_name"))
        .join(Product, Product.product_id == Customer.plan_id, isouter=True)
        .where(Customer.customer_id == customer_id)
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    return Profile(
        customer_id=row.customer_id,
        display_name=row.display_name,
        age_band=row.age_band,
        region=row.region,
        signup_date=_as_date(row.signup_date),
        contract_type=row.contract_type,
        payment_method=row.payment_method,
        plan_id=row.plan_id,
        plan_name=row.plan_name,
        arpu=float(row.arpu),
        data_gb_month=None if row.data_gb_month is None else float(row.data_gb_month),
        voice_min_month=None if row.voice_min_month is None else float(row.voice_min_month),
    )


@dataclass(frozen=True)
class Holding:
    """A product the customer holds now."""

    product_id: str
    name: str
    category: str
    start_date: date
    monthly_price: float | None


def holdings(engine: Engine, customer_id: str, today: date, limit: int = 50) -> list[Holding]:
    """Subscriptions open today (no end, or an end after today), newest first."""
    query = (
        select(
            Subscription.product_id,
            Product.name,
            Product.category,
            Subscription.start_date,
            Subscription.monthly_price,
        )
        .join(Product, Product.product_id == Subscription.product_id)
        .where(
            Subscription.customer_id == customer_id,
            or_(Subscription.end_date.is_(None), Subscription.end_date > today),
        )
        .order_by(Subscription.start_date.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [
            Holding(
                r.product_id,
                r.name,
                r.category,
                _as_date(r.start_date),
                None if r.monthly_price is None else float(r.monthly_price),
            )
            for r in conn.execute(query)
        ]


@dataclass(frozen=True)
class Activity:
    """A transaction or an event, for the customer's recent history."""

    ts: datetime
    kind: str
    product_id: str | None
    channel: str | None
    amount: float | None


def recent_transactions(engine: Engine, customer_id: str, limit: int = 10) -> list[Activity]:
    """The latest transactions (on `ix_transactions_customer_ts`)."""
    query = (
        select(Transaction)
        .where(Transaction.customer_id == customer_id)
        .order_by(Transaction.ts.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [
            Activity(utc(r.ts), r.type, r.product_id, r.channel, float(r.amount))
            for r in conn.execute(query)
        ]


def recent_events(engine: Engine, customer_id: str, limit: int = 10) -> list[Activity]:
    """The latest events (on `ix_events_customer_ts`)."""
    query = (
        select(Event).where(Event.customer_id == customer_id).order_by(Event.ts.desc()).limit(limit)
    )
    with engine.connect() as conn:
        return [
            Activity(utc(r.ts), r.event_type, r.product_id, r.channel, None)
            for r in conn.execute(query)
        ]


# --- Products -------------------------------------------------------------------------


def product_uptake(engine: Engine, product_ids: Sequence[str], today: date) -> dict[str, int]:
    """Customers holding each product today, for one page of products.

    Counted per listed product on `ix_subscriptions_product_end (product_id, end_date)`
    (migration 0004), never over the whole subscriptions table.
    """
    if not product_ids:
        return {}
    query = (
        select(Subscription.product_id, func.count())
        .where(
            Subscription.product_id.in_(list(product_ids)),
            or_(Subscription.end_date.is_(None), Subscription.end_date > today),
        )
        .group_by(Subscription.product_id)
    )
    with engine.connect() as conn:
        found = {str(p): int(n) for p, n in conn.execute(query)}
    return {p: found.get(p, 0) for p in product_ids}


def product_categories(engine: Engine) -> list[str]:
    """The categories in the catalogue (a small table)."""
    with engine.connect() as conn:
        return sorted(str(c) for c in conn.execute(select(Product.category).distinct()).scalars())


def latest_churn_scored_at(engine: Engine) -> datetime | None:
    """When churn was last scored (the top of `ix_churn_scores_scored_at_band`)."""
    with engine.connect() as conn:
        found = conn.execute(select(func.max(ChurnScore.scored_at))).scalar_one_or_none()
    return None if found is None else utc(found)


def product(engine: Engine, product_id: str) -> ProductView | None:
    """One catalogue entry in the API's shape, or None."""
    with Session(engine) as session:
        found = session.get(Product, product_id)
        return None if found is None else product_view(found)
