"""Business KPIs over the store: offer response rates, churn exposure, revenue at risk."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from nextoffer.domain.vocabulary import EventType
from nextoffer.store.reads import churn, kpis, offers
from nextoffer.store.runs import utcnow

if TYPE_CHECKING:
    from nextoffer.store import Engine

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
        customers = kpis.customer_count(conn)
        active = kpis.open_subscriptions(conn)
        by_type = offers.offer_event_counts(conn, since)
        high_risk = churn.band_counts(conn).get(churn.HIGH_BAND, 0)
        at_risk = churn.revenue_at_risk(conn)
    impressions = by_type[EventType.OFFER_IMPRESSION.value]
    clicks = by_type[EventType.OFFER_CLICK.value]
    accepts = by_type[EventType.OFFER_ACCEPT.value]
    return Kpis(
        customers=customers,
        active_subscriptions=active,
        impressions=impressions,
        clicks=clicks,
        accepts=accepts,
        declines=by_type[EventType.OFFER_DECLINE.value],
        ctr=clicks / impressions if impressions else 0.0,
        acceptance_rate=accepts / impressions if impressions else 0.0,
        high_risk_customers=high_risk,
        revenue_at_risk=at_risk,
    )
