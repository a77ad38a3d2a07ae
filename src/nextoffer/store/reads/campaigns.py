"""Campaign audience reads: customers with features, their segment and latest churn band."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, or_, select

from nextoffer.store.reads._sql import Bind, connect, optional_float
from nextoffer.store.schema import ChurnScore, Segment, UserFeatures


@dataclass(frozen=True)
class AudienceMember:
    """One customer a campaign may reach: segment and band of the latest churn scoring."""

    customer_id: str
    segment_id: int | None
    segment: str | None
    churn_band: str | None
    churn_risk: float | None


def known_segment(bind: Bind, segment: str) -> bool:
    """Whether `segment` names a segment of the `segments` table, by id or by name."""
    with connect(bind) as conn:
        found = conn.execute(select(Segment.segment_id).where(_segment_is(segment))).first()
    return found is not None


def audience(
    bind: Bind, *, segment: str | None = None, churn_band: str | None = None
) -> list[AudienceMember]:
    """Customers with features in id order, optionally of one segment or churn band.

    `segment` is a segment id or name (case-insensitive); `churn_band` a band of the latest
    churn scoring (customers it did not score have no band).
    """
    newest = select(func.max(ChurnScore.scored_at)).scalar_subquery()
    latest = (
        select(ChurnScore.customer_id, ChurnScore.band, ChurnScore.score)
        .where(ChurnScore.scored_at == newest)
        .subquery()
    )
    query = (
        select(
            UserFeatures.customer_id,
            UserFeatures.segment_id,
            Segment.name,
            latest.c.band,
            latest.c.score,
        )
        .join(Segment, Segment.segment_id == UserFeatures.segment_id, isouter=True)
        .join(latest, latest.c.customer_id == UserFeatures.customer_id, isouter=True)
        .order_by(UserFeatures.customer_id)
    )
    if segment is not None:
        query = query.where(_segment_is(segment))
    if churn_band is not None:
        query = query.where(latest.c.band == churn_band)
    with connect(bind) as conn:
        return [
            AudienceMember(
                str(row.customer_id),
                None if row.segment_id is None else int(row.segment_id),
                None if row.name is None else str(row.name),
                None if row.band is None else str(row.band),
                optional_float(row.score),
            )
            for row in conn.execute(query)
        ]


def _segment_is(segment: str) -> ColumnElement[bool]:
    by_name = func.lower(Segment.name) == segment.strip().lower()
    if segment.strip().isdigit():
        return or_(Segment.segment_id == int(segment), by_name)
    return by_name
