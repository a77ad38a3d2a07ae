"""Writing exposures and control-group membership, idempotently; reading who is held out.

Exposures are inserted ON CONFLICT DO NOTHING on `exposure_id` (one per unit a day), so a
replayed spool or a second replica's write stores nothing twice.

`control_group` keeps one row per customer who was ever held out: when the customer
entered (`entered_on`), when they left (`left_on`, set when the share shrank or the salt
changed), and the share in force when they entered. A customer who leaves and later
re-enters (the share grew back) gets `left_on` cleared and a new `entered_on`: the row
describes the current stint, and earlier exposures keep the arm they were recorded with.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Connection, Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from nextoffer.store.events import existing_customers
from nextoffer.store.reads._sql import Bind, connect
from nextoffer.store.schema import ControlGroupMember, Customer, Exposure

BATCH = 1000
"""Rows per insert or update statement (ids per `IN` list stay far below the limits)."""

_EXPOSURES: Table = Exposure.__table__  # type: ignore[assignment]
_CONTROL: Table = ControlGroupMember.__table__  # type: ignore[assignment]

__all__ = [
    "ControlGroupEntry",
    "ControlGroupSync",
    "control_group_rows",
    "current_members",
    "customer_ids",
    "enter_control_group",
    "existing_customers",
    "insert_exposures",
    "is_member",
    "sync_control_group",
]


@dataclass(frozen=True)
class ControlGroupEntry:
    """One `control_group` row."""

    customer_id: str
    entered_on: date
    left_on: date | None
    share: float


@dataclass(frozen=True)
class ControlGroupSync:
    """What a sync to the current share changed."""

    members: int
    """Customers in the control group after the sync."""
    entered: int
    """New rows: customers held out for the first time."""
    reentered: int
    """Customers who had left and are held out again (left_on cleared, entered_on today)."""
    left: int
    """Customers no longer held out (left_on set today)."""


def _chunks(items: Sequence[Any], size: int = BATCH) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _insert(conn: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """`INSERT` in the connection's dialect, which has ON CONFLICT DO NOTHING."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_exposures(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> set[str]:
    """Insert `exposures` rows, skipping ids already stored; returns the ids stored now."""
    stored: set[str] = set()
    for chunk in _chunks(rows):
        statement = (
            _insert(conn, _EXPOSURES)
            .on_conflict_do_nothing(index_elements=["exposure_id"])
            .returning(_EXPOSURES.c.exposure_id)
        )
        stored.update(str(i) for i in conn.execute(statement, list(chunk)).scalars())
    return stored


def _rows(conn: Connection, ids: Iterable[str] | None = None) -> dict[str, date | None]:
    """{customer_id: left_on} of the stored rows (of `ids` only, when given)."""
    query = select(ControlGroupMember.customer_id, ControlGroupMember.left_on)
    if ids is None:
        return {str(c): left for c, left in conn.execute(query)}
    found: dict[str, date | None] = {}
    for chunk in _chunks(sorted(set(ids))):
        where = query.where(ControlGroupMember.customer_id.in_(chunk))
        found.update({str(c): left for c, left in conn.execute(where)})
    return found


def _enter(conn: Connection, ids: Collection[str], day: date, share: float) -> int:
    rows = [{"customer_id": c, "entered_on": day, "left_on": None, "share": share} for c in ids]
    for chunk in _chunks(rows):
        statement = _insert(conn, _CONTROL).on_conflict_do_nothing(index_elements=["customer_id"])
        conn.execute(statement, list(chunk))
    return len(rows)


def _reenter(conn: Connection, ids: Collection[str], day: date, share: float) -> int:
    statement = (
        update(_CONTROL)
        .where(_CONTROL.c.customer_id == bindparam("cid"))
        .values(entered_on=day, left_on=None, share=share)
    )
    params = [{"cid": c} for c in sorted(ids)]
    for chunk in _chunks(params):
        conn.execute(statement, list(chunk))
    return len(params)


def _leave(conn: Connection, ids: Collection[str], day: date) -> int:
    wanted = sorted(ids)
    for chunk in _chunks(wanted):
        conn.execute(update(_CONTROL).where(_CONTROL.c.customer_id.in_(chunk)).values(left_on=day))
    return len(wanted)


def enter_control_group(
    conn: Connection, entries: Mapping[str, date], share: float
) -> tuple[int, int]:
    """Record customers held out on the given days: new rows, or re-entries of those who left.

    A customer already in (no `left_on`) keeps their row: `entered_on` never moves. One who
    left re-enters only when held out after the day they left. Returns (entered,
    reentered). The caller owns the transaction.
    """
    if not entries:
        return 0, 0
    stored = _rows(conn, entries)
    new = [c for c in entries if c not in stored]
    # Held out after they left: back in. An older exposure replayed late changes nothing.
    back = [c for c in entries if (left := stored.get(c)) is not None and entries[c] > left]
    for day in sorted({entries[c] for c in new}):
        _enter(conn, [c for c in new if entries[c] == day], day, share)
    for day in sorted({entries[c] for c in back}):
        _reenter(conn, [c for c in back if entries[c] == day], day, share)
    return len(new), len(back)


def sync_control_group(
    conn: Connection, members: Collection[str], share: float, today: date
) -> ControlGroupSync:
    """Make `control_group` say that exactly `members` are held out from `today` on.

    Members without a row enter today; members who had left re-enter today; rows of
    customers no longer members (a smaller share, a new salt, a customer gone) get
    `left_on = today`. Members already in keep `entered_on` and their share: a changed
    share never rewrites when anyone entered. The caller owns the transaction.
    """
    wanted = set(members)
    stored = _rows(conn)
    new = [c for c in wanted if c not in stored]
    back = [c for c in wanted if c in stored and stored[c] is not None]
    gone = [c for c, left in stored.items() if left is None and c not in wanted]
    entered = _enter(conn, sorted(new), today, share)
    reentered = _reenter(conn, back, today, share)
    left = _leave(conn, gone, today)
    return ControlGroupSync(len(wanted), entered, reentered, left)


def customer_ids(bind: Bind) -> list[str]:
    """Every customer's id, in id order."""
    with connect(bind) as conn:
        query = select(Customer.customer_id).order_by(Customer.customer_id)
        return [str(c) for c in conn.execute(query).scalars()]


def is_member(bind: Bind, customer_id: str) -> bool:
    """True when the customer's row says they are held out now (entered, not left)."""
    query = select(ControlGroupMember.customer_id).where(
        ControlGroupMember.customer_id == customer_id, ControlGroupMember.left_on.is_(None)
    )
    with connect(bind) as conn:
        return conn.execute(query).first() is not None


def current_members(bind: Bind) -> set[str]:
    """The customers the table holds out now (entered, not left)."""
    query = select(ControlGroupMember.customer_id).where(ControlGroupMember.left_on.is_(None))
    with connect(bind) as conn:
        return {str(c) for c in conn.execute(query).scalars()}


def control_group_rows(bind: Bind) -> list[ControlGroupEntry]:
    """Every `control_group` row, by customer id."""
    query = select(
        ControlGroupMember.customer_id,
        ControlGroupMember.entered_on,
        ControlGroupMember.left_on,
        ControlGroupMember.share,
    ).order_by(ControlGroupMember.customer_id)
    with connect(bind) as conn:
        return [
            ControlGroupEntry(str(c), e, left, float(s)) for c, e, left, s in conn.execute(query)
        ]
