"""Contact-cap reads: how often offers were shown, and which were accepted, since a time.

One definition for the three callers that enforce contact caps: the live answer (one
customer), precompute and cache warming (a range of customer ids).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import bindparam, func, select

from nextoffer.domain.vocabulary import EventType
from nextoffer.store.reads._sql import Bind, connect
from nextoffer.store.schema import ContactHistory, Event

IdRange = tuple[str, str]
"""An inclusive range of customer ids (first, last); a single customer is (id, id)."""


def shown_counts(
    bind: Bind, since: datetime, between: IdRange | None = None
) -> defaultdict[str, dict[str, int]]:
    """{customer: {product: times shown}} since `since`, for the ids in `between` (or all).

    A defaultdict: a customer never shown anything reads as {}.
    """
    query = _SHOWN if between is None else _SHOWN_BETWEEN
    params = {"since": since, **_bounds(between)}
    shown: defaultdict[str, dict[str, int]] = defaultdict(dict)
    with connect(bind) as conn:
        for customer, product, count in conn.execute(query, params):
            shown[str(customer)][str(product)] = int(count)
    return shown


def accepted_products(
    bind: Bind, since: datetime, between: IdRange | None = None
) -> defaultdict[str, set[str]]:
    """{customer: products whose offer they accepted} since `since`, for the ids in `between`.

    A defaultdict: a customer who accepted nothing reads as an empty set.
    """
    query = _ACCEPTED if between is None else _ACCEPTED_BETWEEN
    params = {"since": since, **_bounds(between)}
    accepted: defaultdict[str, set[str]] = defaultdict(set)
    with connect(bind) as conn:
        for customer_id, product_id in conn.execute(query, params):
            if product_id:
                accepted[str(customer_id)].add(str(product_id))
    return accepted


def _bounds(between: IdRange | None) -> dict[str, str]:
    return {} if between is None else {"first": between[0], "last": between[1]}


# Built once, parameters bound per call: each live answer runs these for one customer, and
# building a statement costs several times what running it does.
_SHOWN = (
    select(ContactHistory.customer_id, ContactHistory.product_id, func.count())
    .where(ContactHistory.contacted_at >= bindparam("since"))
    .group_by(ContactHistory.customer_id, ContactHistory.product_id)
)
_SHOWN_BETWEEN = _SHOWN.where(
    ContactHistory.customer_id.between(bindparam("first"), bindparam("last"))
)
_ACCEPTED = select(Event.customer_id, Event.product_id).where(
    Event.ts >= bindparam("since"), Event.event_type == EventType.OFFER_ACCEPT.value
)
_ACCEPTED_BETWEEN = _ACCEPTED.where(
    Event.customer_id.between(bindparam("first"), bindparam("last"))
)
