"""Consent history, the do-not-call list and time zones: writing changes, reading what is in force.

`consent` is the history itself: a change is a row keyed (customer, channel, changed_at),
written ON CONFLICT DO UPDATE so an import sent twice, or a retried request, stores it once.
What is in force is the latest row per customer and channel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from nextoffer.domain.contact import ConsentFacts
from nextoffer.store.reads._sql import Bind, connect
from nextoffer.store.schema import ConsentChange, Customer, DoNotCall

_CONSENT: Table = ConsentChange.__table__  # type: ignore[assignment]

__all__ = ["ChangeRow", "facts_between", "facts_for", "facts_of", "history", "record_changes"]


@dataclass(frozen=True)
class ChangeRow:
    """One consent change as stored."""

    customer_id: str
    channel: str
    granted: bool
    changed_at: datetime
    source: str


def record_changes(conn: Connection, changes: Sequence[ChangeRow]) -> int:
    """Add changes to the history (a repeated key keeps the last value); returns how many."""
    if not changes:
        return 0
    insert = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(_CONSENT)
    statement = insert.on_conflict_do_update(
        index_elements=["customer_id", "channel", "changed_at"],
        set_={"granted": insert.excluded.granted, "source": insert.excluded.source},
    )
    conn.execute(
        statement,
        [
            {
                "customer_id": c.customer_id,
                "channel": c.channel,
                "changed_at": c.changed_at,
                "granted": c.granted,
                "source": c.source,
            }
            for c in changes
        ],
    )
    return len(changes)


def history(bind: Bind, customer_id: str) -> list[ChangeRow]:
    """Every consent change of the customer, oldest first."""
    with connect(bind) as conn:
        rows = conn.execute(
            select(_CONSENT)
            .where(_CONSENT.c.customer_id == customer_id)
            .order_by(_CONSENT.c.changed_at, _CONSENT.c.channel)
        ).all()
    return [_change(row) for row in rows]


def facts_for(bind: Bind, customer_id: str) -> ConsentFacts | None:
    """What is in force for one customer; None for an unknown customer."""
    found = facts_between(bind, customer_id, customer_id)
    return found.get(customer_id)


def facts_between(bind: Bind, first: str, last: str) -> dict[str, ConsentFacts]:
    """What is in force for every customer with an id in [first, last] (a precompute chunk)."""
    return _facts_where(bind, lambda column: column.between(first, last))


def facts_of(bind: Bind, customer_ids: Sequence[str]) -> dict[str, ConsentFacts]:
    """What is in force for each of `customer_ids` (a batch of answers); unknown ones absent."""
    ids = list(customer_ids)
    if not ids:
        return {}
    return _facts_where(bind, lambda column: column.in_(ids))


def _facts_where(
    bind: Bind, which: Callable[[Any], ColumnElement[bool]]
) -> dict[str, ConsentFacts]:
    """What is in force for the customers whose id column satisfies `which`."""
    with connect(bind) as conn:
        people = conn.execute(
            select(Customer.customer_id, Customer.region, Customer.timezone).where(
                which(Customer.customer_id)
            )
        ).all()
        if not people:
            return {}
        changes = conn.execute(
            select(_CONSENT.c.customer_id, _CONSENT.c.channel, _CONSENT.c.granted)
            .where(which(_CONSENT.c.customer_id))
            .order_by(_CONSENT.c.customer_id, _CONSENT.c.changed_at)
        ).all()
        listed = set(
            conn.execute(
                select(DoNotCall.customer_id).where(which(DoNotCall.customer_id))
            ).scalars()
        )
    consent: dict[str, dict[str, bool]] = {}
    for customer_id, channel, granted in changes:  # oldest first: the latest one stays
        consent.setdefault(customer_id, {})[channel] = bool(granted)
    return {
        p.customer_id: ConsentFacts(
            consent=consent.get(p.customer_id, {}),
            do_not_call=p.customer_id in listed,
            timezone=p.timezone,
            region=p.region,
        )
        for p in people
    }


def listed(bind: Bind, customer_ids: Iterable[str]) -> set[str]:
    """Those of `customer_ids` on the do-not-call list."""
    ids = list(customer_ids)
    with connect(bind) as conn:
        return set(
            conn.execute(
                select(DoNotCall.customer_id).where(DoNotCall.customer_id.in_(ids))
            ).scalars()
        )


def _change(row: Any) -> ChangeRow:
    return ChangeRow(
        customer_id=row.customer_id,
        channel=row.channel,
        granted=bool(row.granted),
        changed_at=row.changed_at,
        source=row.source,
    )
