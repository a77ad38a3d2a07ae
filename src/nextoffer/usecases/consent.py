"""Consent: change a customer's consent (API, events), and what the contact policy allows now.

`set_consent` is the one way a consent change is made outside an import: it writes the
change to the history with its time and source and drops the customer's cached answers
and cached contact facts, so the next answer follows it at once. `contact_decision` is
what the offers path asks before anything else (`usecases.offers.STEPS`).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from nextoffer.cache import CacheUnavailableError, keys
from nextoffer.domain.contact import (
    CHANNELS,
    SCOPES,
    SOURCES,
    ConsentFacts,
    ContactDecision,
    Withheld,
    decide,
)
from nextoffer.domain.errors import InvalidRequestError, NotFoundError
from nextoffer.scoring.contact import contact_rules
from nextoffer.store import DatabaseError
from nextoffer.store import consent as store
from nextoffer.store.consent import ChangeRow
from nextoffer.usecases.context import Services

log = logging.getLogger(__name__)

UNAVAILABLE_NOTE = "consent records unavailable"
# Clients' clocks drift: an event a few minutes "ahead" is still plausible (as for responses).
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class ConsentState:
    """One customer's consent now: what is in force, what it allows now, and the history."""

    customer_id: str
    facts: ConsentFacts
    decision: ContactDecision
    history: list[ChangeRow]


def set_consent(
    services: Services,
    customer_id: str,
    changes: Mapping[str, bool],
    *,
    source: str = "api",
    at: datetime | None = None,
) -> ConsentState:
    """Record consent changes ({channel, `contact` or `profiling`: granted}) at `at` (now).

    Raises InvalidRequestError for an unknown scope or source or a time without a zone,
    NotFoundError for an unknown customer.
    """
    if not changes:
        raise InvalidRequestError("no consent change given")
    unknown = sorted(set(changes) - set(SCOPES))
    if unknown:
        raise InvalidRequestError(
            f"unknown consent channel {unknown[0]!r}: one of {', '.join(SCOPES)}",
            kind="validation-error",
        )
    if source not in SOURCES:
        raise InvalidRequestError(f"unknown consent source {source!r}: one of {SOURCES}")
    when = at or services.clock()
    if when.tzinfo is None:
        raise InvalidRequestError("the time of a consent change needs a time zone")
    rows = [
        ChangeRow(customer_id, scope, bool(granted), when, source)
        for scope, granted in changes.items()
    ]
    with services.engine.begin() as conn:
        facts = store.facts_for(conn, customer_id)
        if facts is None:
            raise NotFoundError(f"no customer {customer_id!r}")
        store.record_changes(conn, rows)
    forget_contact(services, customer_id)
    return consent_state(services, customer_id)


def record_consent_event(
    services: Services, customer_id: str, channel: str, granted: bool, ts: datetime | None
) -> ConsentState:
    """A consent event (source `event`) at its own time: a later change elsewhere still wins.

    Raises InvalidRequestError for a time in the future or without a zone.
    """
    now = services.clock()
    when = ts or now
    if when.tzinfo is None:
        raise InvalidRequestError("ts needs a time zone (e.g. 2026-11-23T10:00:00Z)")
    if when > now + CLOCK_SKEW:
        raise InvalidRequestError(f"ts {when.isoformat()} is in the future")
    return set_consent(services, customer_id, {channel: granted}, source="event", at=when)


def forget_contact(services: Services, customer_id: str) -> None:
    """Drop the customer's cached answers and contact facts (after a consent change)."""
    services.offers.forget(customer_id)
    with contextlib.suppress(CacheUnavailableError):
        services.cache.delete(keys.contact_facts(customer_id, services.state.stamp))


def consent_state(services: Services, customer_id: str, channel: str | None = None) -> ConsentState:
    """What is in force for the customer and what it allows now; NotFoundError if unknown."""
    facts = store.facts_for(services.engine, customer_id)
    if facts is None:
        raise NotFoundError(f"no customer {customer_id!r}")
    decision = decide(facts, contact_rules(services.settings), services.clock(), channel)
    return ConsentState(customer_id, facts, decision, store.history(services.engine, customer_id))


def contact_decision(
    services: Services, customer_id: str, channel: str | None
) -> tuple[ContactDecision, list[str]]:
    """What the policy allows the customer now, and notes when the records could not be read.

    The facts come from the cache when they are there (under the serving stamp, so an
    import's changes are read afresh), else from the database. With the database down
    and nothing cached, an opt-in policy (NEXTOFFER_CONSENT_REQUIRED) offers nothing; an
    opt-out one applies its default (no withdrawal known) and says so in a note.
    """
    rules = contact_rules(services.settings)
    now = services.clock()
    facts = _facts(services, customer_id)
    if facts is None:  # an unknown customer: the answer chain says so (404)
        return ContactDecision(frozenset(CHANNELS) if channel is None else frozenset({channel})), []
    if isinstance(facts, Unavailable):
        if rules.consent_required:
            closed = ContactDecision(frozenset(), Withheld.POLICY_UNAVAILABLE)
            return closed, [UNAVAILABLE_NOTE]
        return decide(ConsentFacts(), rules, now, channel), [UNAVAILABLE_NOTE]
    return decide(facts, rules, now, channel), []


def cache_contact_facts(services: Services, customer_ids: Sequence[str]) -> int:
    """Cache the contact facts of those of `customer_ids` not cached yet, read in one block.

    What `contact_decision` does one customer at a time on a cache miss, done for a batch
    of answers beforehand (the decisions themselves are unchanged). How many were cached;
    0 when the database or the cache is unreachable (each answer then reads on its own).
    """
    stamp = services.state.stamp
    wanted = {keys.contact_facts(c, stamp): c for c in customer_ids}
    try:
        missing = [c for key, c in wanted.items() if services.cache.get(key) is None]
    except CacheUnavailableError:
        return 0
    if not missing:
        return 0
    try:
        found = store.facts_of(services.engine, missing)
    except DatabaseError:
        return 0
    if found:
        with contextlib.suppress(CacheUnavailableError):
            items = {keys.contact_facts(c, stamp): _dump(f) for c, f in found.items()}
            services.cache.set_many(items, keys.HOT_TTL_S)
    return len(found)


class Unavailable:
    """The consent records could not be read."""


def _facts(services: Services, customer_id: str) -> ConsentFacts | Unavailable | None:
    key = keys.contact_facts(customer_id, services.state.stamp)
    try:
        cached = services.cache.get(key)
    except CacheUnavailableError:
        cached = None
    if cached is not None:
        return _load(cached)
    try:
        facts = store.facts_for(services.engine, customer_id)
    except DatabaseError as exc:
        log.warning("consent records unavailable: %s", str(exc).splitlines()[0][:200])
        return Unavailable()
    if facts is not None:
        with contextlib.suppress(CacheUnavailableError):
            services.cache.set(key, _dump(facts), keys.HOT_TTL_S)
    return facts


def _dump(facts: ConsentFacts) -> str:
    return json.dumps(
        {
            "consent": dict(facts.consent),
            "do_not_call": facts.do_not_call,
            "timezone": facts.timezone,
            "region": facts.region,
        }
    )


def _load(text: str) -> ConsentFacts:
    data = json.loads(text)
    return ConsentFacts(
        consent={str(k): bool(v) for k, v in data["consent"].items()},
        do_not_call=bool(data["do_not_call"]),
        timezone=data["timezone"],
        region=data["region"],
    )
