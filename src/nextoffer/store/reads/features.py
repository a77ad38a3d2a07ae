"""Feature reads: the SQL aggregates features are built from, and the stored features.

Each function returns pandas frames with one row per customer (or per pair); the feature
arithmetic on them lives in `nextoffer.features`. pandas is imported where a frame is
made, so the serving path that imports `store.reads` does not load it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Date,
    Executable,
    Float,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    union_all,
)

from nextoffer.domain.attributes import FEATURE_ROLES
from nextoffer.domain.vocabulary import ENGAGEMENT_EVENTS, SERVICE_ISSUE_EVENTS, EventType
from nextoffer.store.reads._sql import Bind, connect
from nextoffer.store.reads.attributes import attribute_frame, attribute_schema, typed_value
from nextoffer.store.schema import (
    ChurnLabel,
    Customer,
    Event,
    Product,
    Subscription,
    Transaction,
    UserFeatures,
)

if TYPE_CHECKING:
    import pandas as pd

IdRange = tuple[str, str]


def frame(bind: Bind, query: Executable) -> pd.DataFrame:
    """A query's rows as a DataFrame with the query's column names."""
    import pandas as pd

    with connect(bind) as conn:
        result = conn.execute(query)
        # Plain tuples: pandas probes SQLAlchemy Row objects key by key, ten times slower.
        return pd.DataFrame([tuple(row) for row in result], columns=list(result.keys()))


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.sum(case((condition, 1), else_=0))


def newest_activity(bind: Bind) -> list[datetime]:
    """The newest transaction's and the newest event's time (those that exist)."""
    with connect(bind) as conn:
        newest = [
            conn.execute(select(func.max(Transaction.ts))).scalar(),
            conn.execute(select(func.max(Event.ts))).scalar(),
        ]
    return [t for t in newest if t is not None]


@dataclass(frozen=True)
class FeatureSources:
    """Per-customer aggregates as of an instant, one frame per source table."""

    customers: pd.DataFrame
    """Customers signed up by then: master data (arpu as float)."""
    spend: pd.DataFrame
    """last_ts, frequency_90d, monetary_90d, monetary_total from transactions before then."""
    holdings: pd.DataFrame
    """products_held and one count per category column, of subscriptions open that day."""
    activity: pd.DataFrame
    """support_contacts_90d, engagement_30d, offers_accepted_180d from events before then."""


def feature_sources(
    bind: Bind, as_of: datetime, category_columns: Mapping[str, str]
) -> FeatureSources:
    """The aggregates of every customer who had signed up by `as_of`, from data before it.

    `category_columns` names the count column of each product category in `holdings`.
    """
    day = as_of.date()
    t30, t90, t180 = (as_of - timedelta(days=d) for d in (30, 90, 180))
    with connect(bind) as conn:
        customers = frame(
            conn,
            select(
                Customer.customer_id,
                Customer.signup_date,
                Customer.contract_type,
                Customer.payment_method,
                Customer.region,
                Customer.age_band,
                Customer.plan_id,
                cast(Customer.arpu, Float).label("arpu"),
                Customer.data_gb_month,
                Customer.voice_min_month,
            ).where(Customer.signup_date <= day),
        )
        spend = frame(
            conn,
            select(
                Transaction.customer_id,
                func.max(Transaction.ts).label("last_ts"),
                _count_if(Transaction.ts >= t90).label("frequency_90d"),
                cast(
                    func.sum(case((Transaction.ts >= t90, Transaction.amount), else_=0)), Float
                ).label("monetary_90d"),
                cast(func.sum(Transaction.amount), Float).label("monetary_total"),
            )
            .where(Transaction.ts < as_of)
            .group_by(Transaction.customer_id),
        )
        holdings = frame(
            conn,
            select(
                Subscription.customer_id,
                func.count().label("products_held"),
                *(
                    _count_if(Product.category == category).label(column)
                    for category, column in category_columns.items()
                ),
            )
            .join(Product, Product.product_id == Subscription.product_id)
            .where(
                Subscription.start_date <= day,
                or_(Subscription.end_date.is_(None), Subscription.end_date >= day),
            )
            .group_by(Subscription.customer_id),
        )
        service = [e.value for e in SERVICE_ISSUE_EVENTS]
        engagement = [e.value for e in ENGAGEMENT_EVENTS]
        activity = frame(
            conn,
            select(
                Event.customer_id,
                _count_if(and_(Event.ts >= t90, Event.event_type.in_(service))).label(
                    "support_contacts_90d"
                ),
                _count_if(and_(Event.ts >= t30, Event.event_type.in_(engagement))).label(
                    "engagement_30d"
                ),
                _count_if(Event.event_type == EventType.OFFER_ACCEPT.value).label(
                    "offers_accepted_180d"
                ),
            )
            .where(Event.ts < as_of, Event.ts >= t180)
            .group_by(Event.customer_id),
        )
    return FeatureSources(customers, spend, holdings, activity)


# The catalogue's columns every model and the eligibility step read (features.training
# re-exports it); here so that serving reads the catalogue without the training stack.
PRODUCT_COLUMNS = (
    "product_id",
    "name",
    "category",
    "price",
    "margin",
    "upfront_price",
    "contract_types",
    "min_tenure_months",
    "regions",
    "channels",
    "requires_category",
    "is_retention_offer",
    "active",
    # Product rules (migration 0006): what the one eligibility step reads besides the above.
    "requires_products",
    "requires_attribute",
    "exclusion_group",
    "upgrades_from",
)


def product_records(bind: Bind, columns: Sequence[str]) -> list[dict[str, Any]]:
    """The catalogue's `columns` as records in product id order (money columns as float)."""
    query = select(*(getattr(Product, name) for name in columns)).order_by(Product.product_id)
    with connect(bind) as conn:
        rows = conn.execute(query).mappings().all()
    records = []
    for row in rows:
        record = dict(row)
        for money in ("price", "margin", "upfront_price"):
            if money in record:
                record[money] = float(record[money] or 0.0)
        records.append(record)
    return records


def subscription_rows(bind: Bind, day: date, listed: IdRange | None = None) -> pd.DataFrame:
    """customer_id, product_id, start_date, end_date of subscriptions started by `day`."""
    return frame(bind, _subscriptions(day, listed))


def holding_tuples(
    bind: Bind, day: date, types: Sequence[str], *, before: datetime, listed: IdRange
) -> tuple[list[tuple[str, str, date, date | None]], list[tuple[str, str]]]:
    """`subscription_rows` and `acquisition_pairs` of a few customers, in one query, no pandas.

    The live answer's holdings: one prebuilt statement (building one costs more than
    running it for one customer), plain tuples instead of frames.
    """
    held: list[tuple[str, str, date, date | None]] = []
    acquired: list[tuple[str, str]] = []
    params = {"day": day, "before": before, "types": list(types), "first": listed[0]}
    with connect(bind) as conn:
        for customer, product, start, end, subscribed in conn.execute(
            _HOLDINGS, {**params, "last": listed[1]}
        ):
            if subscribed:
                held.append((str(customer), str(product), start, end))
            else:
                acquired.append((str(customer), str(product)))
    return held, acquired


_HOLDINGS: Executable = union_all(
    select(
        Subscription.customer_id,
        Subscription.product_id,
        Subscription.start_date,
        Subscription.end_date,
        literal(1).label("subscribed"),
    ).where(
        Subscription.start_date <= bindparam("day"),
        Subscription.customer_id.between(bindparam("first"), bindparam("last")),
    ),
    select(
        Transaction.customer_id,
        Transaction.product_id,
        cast(null(), Date).label("start_date"),
        cast(null(), Date).label("end_date"),
        literal(0).label("subscribed"),
    ).where(
        Transaction.ts < bindparam("before"),
        Transaction.type.in_(bindparam("types", expanding=True)),
        Transaction.customer_id.between(bindparam("first"), bindparam("last")),
    ),
)


def _subscriptions(day: date, listed: IdRange | None) -> Executable:
    return select(
        Subscription.customer_id,
        Subscription.product_id,
        Subscription.start_date,
        Subscription.end_date,
    ).where(
        Subscription.start_date <= day,
        *([Subscription.customer_id.between(*listed)] if listed else []),
    )


def acquisition_pairs(
    bind: Bind,
    types: Sequence[str],
    *,
    before: datetime,
    since: datetime | None = None,
    listed: IdRange | None = None,
) -> pd.DataFrame:
    """(customer_id, product_id) of transactions of `types` in [since, before)."""
    return frame(bind, _acquisitions(types, before, since, listed))


def _acquisitions(
    types: Sequence[str], before: datetime, since: datetime | None, listed: IdRange | None
) -> Executable:
    return select(Transaction.customer_id, Transaction.product_id).where(
        *([Transaction.ts >= since] if since is not None else []),
        Transaction.ts < before,
        Transaction.type.in_(list(types)),
        *([Transaction.customer_id.between(*listed)] if listed else []),
    )


def feature_rows(bind: Bind, customer_ids: Sequence[str]) -> list[dict[str, Any]]:
    """`current_features` of these customers as plain dicts, by id (no pandas).

    The same columns and values: `as_of` a datetime, attributes typed as `attribute_frame`
    types them (`reads.attributes.typed_value`).
    """
    ids = {"ids": [str(c) for c in customer_ids]}
    with connect(bind) as conn:
        rows = [dict(row) for row in conn.execute(_FEATURE_ROWS, ids).mappings()]
        schema = [s for s in attribute_schema(conn) if s.role in FEATURE_ROLES]
        if not rows or not schema:
            return rows
        stored = conn.execute(_ATTRIBUTES, ids).all()
    values = {str(c): a if isinstance(a, dict) else {} for c, a in stored}
    for row in rows:
        found = values.get(str(row["customer_id"]), {})
        row.update({s.column: typed_value(s.kind, found.get(s.name)) for s in schema})
    return rows


_FEATURE_ROWS = (
    select(*(c for c in UserFeatures.__table__.columns if c.name != "computed_at"))
    .where(UserFeatures.customer_id.in_(bindparam("ids", expanding=True)))
    .order_by(UserFeatures.customer_id)
)
_ATTRIBUTES = select(Customer.customer_id, Customer.attributes).where(
    Customer.customer_id.in_(bindparam("ids", expanding=True))
)


def current_features(
    bind: Bind,
    customer_ids: Sequence[str] | None = None,
    *,
    between: IdRange | None = None,
) -> pd.DataFrame:
    """The features job's latest output (`user_features`), sorted by customer id.

    `customer_ids` reads only those customers (the live API's case), `between` an inclusive
    id range (a precompute chunk). Custom attributes of role feature or display follow as
    `attr_<name>` columns (`reads.attributes.attribute_frame`); labels never do.
    """
    import pandas as pd

    columns = [c for c in UserFeatures.__table__.columns if c.name != "computed_at"]
    query = select(*columns).order_by(UserFeatures.customer_id)
    if customer_ids is not None:
        query = query.where(UserFeatures.customer_id.in_(list(customer_ids)))
    if between is not None:
        query = query.where(UserFeatures.customer_id.between(*between))
    with connect(bind) as conn:
        found = frame(conn, query)
        if len(found):
            found["as_of"] = pd.to_datetime(found["as_of"], utc=True)
        schema = [s for s in attribute_schema(conn) if s.role in FEATURE_ROLES]
        if not schema:
            return found
        attributes = attribute_frame(conn, customer_ids, between=between, schema=schema)
    return found.merge(attributes, on="customer_id", how="left")


def newest_churn_labels(bind: Bind) -> tuple[date | None, pd.DataFrame]:
    """The newest label date and its labels (customer_id, churned as 0/1)."""
    import pandas as pd

    with connect(bind) as conn:
        newest = conn.execute(select(func.max(ChurnLabel.as_of))).scalar()
        if newest is None:
            return None, pd.DataFrame({"customer_id": [], "churned": []})
        labels = frame(
            conn,
            select(
                ChurnLabel.customer_id,
                case((ChurnLabel.churned, 1), else_=0).label("churned"),
            ).where(ChurnLabel.as_of == newest),
        )
    labels["churned"] = labels["churned"].astype(int)
    return newest, labels
