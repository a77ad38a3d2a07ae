"""Churn reads: the latest scoring's bands and revenue at risk, a customer's score history."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, case, func, select

from nextoffer.store.reads._sql import Bind, as_date, connect, newest_first, rate
from nextoffer.store.schema import ChurnLabel, ChurnScore, Customer

HIGH_BAND = "high"


def latest_scored_at(bind: Bind) -> datetime | None:
    """When churn was last scored (the top of `ix_churn_scores_scored_at_band`)."""
    with connect(bind) as conn:
        found: datetime | None = conn.execute(
            select(func.max(ChurnScore.scored_at))
        ).scalar_one_or_none()
    return found


def _scoring(scored_at: datetime | None) -> ColumnElement[bool]:
    # Without an instant, the latest scoring's: one statement, no second round trip.
    if scored_at is None:
        return ChurnScore.scored_at == select(func.max(ChurnScore.scored_at)).scalar_subquery()
    return ChurnScore.scored_at == scored_at


def band_counts(bind: Bind, scored_at: datetime | None = None) -> dict[str, int]:
    """Customers per churn band in the scoring at `scored_at` (default: the latest).

    An index range count on `ix_churn_scores_scored_at_band`; empty before any scoring.
    """
    query = select(ChurnScore.band, func.count()).where(_scoring(scored_at))
    with connect(bind) as conn:
        rows = conn.execute(query.group_by(ChurnScore.band))
        return {str(band): int(n) for band, n in rows}


def revenue_at_risk(bind: Bind, scored_at: datetime | None = None) -> float:
    """Monthly ARPU of the high-band customers of the scoring at `scored_at` (default: latest)."""
    query = (
        select(func.coalesce(func.sum(Customer.arpu), 0))
        .select_from(ChurnScore)
        .join(Customer, Customer.customer_id == ChurnScore.customer_id)
        .where(_scoring(scored_at), ChurnScore.band == HIGH_BAND)
    )
    with connect(bind) as conn:
        return float(conn.execute(query).scalar_one() or 0)


def latest_label_as_of(bind: Bind) -> date | None:
    """The newest label window's start (the top of `ix_churn_labels_as_of`)."""
    with connect(bind) as conn:
        found = conn.execute(select(func.max(ChurnLabel.as_of))).scalar_one_or_none()
    return None if found is None else as_date(found)


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
        return rate(self.churned, self.labelled)


def churn_marks(bind: Bind) -> tuple[datetime | None, date | None]:
    """(latest scoring instant, latest label date): what `churn_summary` depends on.

    Two index-top reads, so a caller can keep a summary until either moves.
    """
    with connect(bind) as conn:
        return latest_scored_at(conn), latest_label_as_of(conn)


def churn_summary(bind: Bind) -> ChurnSummary:
    """Bands and revenue at risk of the latest scoring, and the latest label window's rate.

    The latest scoring's instant comes from the top of `ix_churn_scores_scored_at_band`; its
    bands are an index range count; revenue at risk is the monthly ARPU of its high-band
    customers (a primary-key join). The churn rate counts the newest `as_of` of
    `churn_labels` through `ix_churn_labels_as_of` (migration 0004).
    """
    with connect(bind) as conn:
        scored_at = latest_scored_at(conn)
        bands: dict[str, int] = {}
        revenue = 0.0
        if scored_at is not None:
            bands = band_counts(conn, scored_at)
            revenue = revenue_at_risk(conn, scored_at)
        as_of = latest_label_as_of(conn)
        labelled = churned = 0
        if as_of is not None:
            labelled, churned = conn.execute(
                select(func.count(), func.count(case((ChurnLabel.churned.is_(True), 1)))).where(
                    ChurnLabel.as_of == as_of
                )
            ).one()
    return ChurnSummary(
        scored_at=scored_at,
        bands=bands,
        revenue_at_risk=revenue,
        label_as_of=as_of,
        labelled=int(labelled),
        churned=int(churned),
    )


@dataclass(frozen=True)
class ScoreRecord:
    """One stored churn score of a customer."""

    scored_at: datetime
    score: float
    band: str
    model_version: str
    top_reasons: list[dict[str, Any]]


def score_history(bind: Bind, customer_id: str, limit: int) -> list[ScoreRecord]:
    """The customer's latest `limit` churn scores, newest first."""
    query = newest_first(ChurnScore, customer_id, ChurnScore.scored_at, limit)
    with connect(bind) as conn:
        rows = conn.execute(query).all()
    return [_score_record(r) for r in rows]


def score_histories(
    bind: Bind, customer_ids: Sequence[str], limit: int
) -> dict[str, list[ScoreRecord]]:
    """`score_history` of each customer in one statement (those without scores absent)."""
    if not customer_ids:
        return {}
    rank = (
        func.row_number()
        .over(partition_by=ChurnScore.customer_id, order_by=ChurnScore.scored_at.desc())
        .label("rank")
    )
    ranked = (
        select(ChurnScore.__table__, rank)
        .where(ChurnScore.customer_id.in_(list(customer_ids)))
        .subquery()
    )
    query = (
        select(ranked)
        .where(ranked.c.rank <= limit)
        .order_by(ranked.c.customer_id, ranked.c.scored_at.desc())
    )
    out: dict[str, list[ScoreRecord]] = {}
    with connect(bind) as conn:
        for r in conn.execute(query):
            out.setdefault(str(r.customer_id), []).append(_score_record(r))
    return out


def _score_record(r: Any) -> ScoreRecord:
    reasons = r.top_reasons
    if isinstance(reasons, str):
        reasons = json.loads(reasons)
    return ScoreRecord(r.scored_at, float(r.score), r.band, r.model_version, list(reasons or []))


def latest_scores(bind: Bind, between: tuple[str, str] | None = None) -> dict[str, float]:
    """Each customer's most recent churn score, for the ids in `between` (or everyone)."""
    newest = select(ChurnScore.customer_id, func.max(ChurnScore.scored_at).label("at"))
    if between is not None:
        # Bounded inside the grouping too: a bound on the outer query alone is not pushed
        # into it, and every score of every customer would be grouped for each live answer.
        newest = newest.where(ChurnScore.customer_id.between(*between))
    newest_at = newest.group_by(ChurnScore.customer_id).subquery()
    query = select(ChurnScore.customer_id, ChurnScore.score).join(
        newest_at,
        (ChurnScore.customer_id == newest_at.c.customer_id)
        & (ChurnScore.scored_at == newest_at.c.at),
    )
    if between is not None:
        query = query.where(ChurnScore.customer_id.between(*between))
    with connect(bind) as conn:
        return {str(customer): float(score) for customer, score in conn.execute(query)}
