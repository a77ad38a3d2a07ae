"""Business KPIs over the store: offer response rates, churn exposure, revenue at risk."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta

from sqlalchemy import Engine, func, select

from nextoffer.domain.vocabulary import EventType
from nextoffer.store.runs import utcnow
from nextoffer.store.schema import ChurnScore, Customer, Event, Subscription

WINDOW_DAYS = 30


@dataclass(frozen=True)
class Kpis:
    """The headline numbers, over the last WINDOW_DAYS for the offer rates."""

    customers: int
    active_subscriptions: int
    impressions: int
    clicks: int
    accepts: int
    declines: int
    ctr: float
    """Clicks per impression."""
    acceptance_rate: float
    """Accepts per impression."""
    high_risk_customers: int
    revenue_at_risk: float
    """Monthly ARPU of the customers in the high churn band (as the console shows it)."""

    def as_counts(self) -> dict[str, float]:
        """The KPIs as the counts of a job run (what gauges and dashboards read)."""
        return {name: float(value) for name, value in asdict(self).items()}


def compute_kpis(engine: Engine, window_days: int = WINDOW_DAYS) -> Kpis:
    """Aggregate the KPIs: a handful of indexed aggregate queries, no table loaded."""
    since = utcnow() - timedelta(days=window_days)
    with engine.connect() as conn:
        customers = conn.execute(select(func.count()).select_from(Customer)).scalar_one()
        active = conn.execute(
            select(func.count()).select_from(Subscription).where(Subscription.end_date.is_(None))
        ).scalar_one()
        by_type = dict(
            conn.execute(
                select(Event.event_type, func.count())
                .where(Event.ts >= since, Event.event_type.like("offer_%"))
                .group_by(Event.event_type)
            ).all()
        )
        latest = select(func.max(ChurnScore.scored_at)).scalar_subquery()
        high_risk, at_risk = conn.execute(
            select(func.count(), func.coalesce(func.sum(Customer.arpu), 0))
            .select_from(ChurnScore)
            .join(Customer, Customer.customer_id == ChurnScore.customer_id)
            .where(ChurnScore.scored_at == latest, ChurnScore.band == "high")
        ).one()
    impressions = int(by_type.get(EventType.OFFER_IMPRESSION.value, 0))
    clicks = int(by_type.get(EventType.OFFER_CLICK.value, 0))
    accepts = int(by_type.get(EventType.OFFER_ACCEPT.value, 0))
    return Kpis(
        customers=int(customers),
        active_subscriptions=int(active),
        impressions=impressions,
        clicks=clicks,
        accepts=accepts,
        declines=int(by_type.get(EventType.OFFER_DECLINE.value, 0)),
        ctr=clicks / impressions if impressions else 0.0,
        acceptance_rate=accepts / impressions if impressions else 0.0,
        high_risk_customers=int(high_risk),
        revenue_at_risk=float(at_risk or 0),
    )
