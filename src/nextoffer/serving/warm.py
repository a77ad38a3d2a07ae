"""Filling the cache from the database in bulk: after a restore, a Redis loss or a new run."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nextoffer.cache import keys
from nextoffer.cache.base import Cache
from nextoffer.config import Settings
from nextoffer.domain.offers import Offer, dump_offers
from nextoffer.domain.results import Counted
from nextoffer.scoring.offers import policy_from_settings
from nextoffer.serving.insights import dump_segment, segment_answer
from nextoffer.serving.offers import offers_key, popular_lists, still_allowed
from nextoffer.serving.state import ServingState
from nextoffer.store import Connection, Engine, precomputed
from nextoffer.store.reads import contacts, customers
from nextoffer.store.runs import utcnow

log = logging.getLogger(__name__)


@dataclass
class WarmResult(Counted):
    """What a cache fill wrote."""

    COUNTED = ("popular_lists", "segments", "offers", "seconds")
    popular_lists: int = 0
    segments: int = 0
    offers: int = 0
    seconds: float = 0.0

    def counts(self) -> dict[str, Any]:
        """The result as job counts, to the millisecond."""
        return {**super().counts(), "seconds": round(self.seconds, 3)}


def warm_popular(engine: Engine, cache: Cache) -> int:
    """Write every segment's popular list (the fallback answers); the number of lists."""
    with engine.connect() as conn:
        lists = popular_lists(conn)
    cache.set_many(
        {keys.segment_popular(name): json.dumps(items) for name, items in lists.items()},
        keys.HOT_TTL_S,
    )
    return len(lists)


def warm_cache(
    engine: Engine,
    cache: Cache,
    state: ServingState,
    settings: Settings,
    chunk_rows: int = 5000,
) -> WarmResult:
    """Refill the cache from the database: popular lists, segments and champion answers.

    Offer answers are written for every customer whose precomputed row was scored by the
    current champion, under the same key and after the same contact-cap and accept filter
    that the API applies, so the API's next answer for them is a cache hit identical to the
    one it would have computed. Customers are read in primary-key chunks (bounded memory
    at any size). Raises CacheUnavailableError when the cache cannot be written.
    """
    started = time.perf_counter()
    result = WarmResult(popular_lists=warm_popular(engine, cache))
    policy = policy_from_settings(settings)
    label = state.offers.label if state.offers is not None else None
    since = policy.window_start(utcnow())
    after = ""
    while True:
        with engine.connect() as conn:
            rows = precomputed.page(conn, after, chunk_rows)
            if not rows:
                break
            first, last = rows[0].customer_id, rows[-1].customer_id
            after = last
            shown, accepted = _responses(conn, first, last, since)
            segments = _segments(conn, first, last)
        items: dict[str, str] = {}
        for row in rows:
            if label is None or row.model_version != label:
                continue
            stored = row.offers
            key = offers_key(row.customer_id, state.stamp, label)
            if row.customer_id not in shown and row.customer_id not in accepted:
                # Nothing to filter (most customers): the stored offers are already in the
                # cached shape (`Offer.to_dict` wrote them), so skip the round trip.
                items[key] = json.dumps(stored, separators=(",", ":"))
                continue
            offers = still_allowed(
                [Offer.from_dict(o) for o in stored],
                shown[row.customer_id],
                accepted[row.customer_id],
                policy.contact_cap,
            )
            items[key] = dump_offers(offers)
        if items:
            cache.set_many(items, settings.offers_cache_ttl_s)
            result.offers += len(items)
        if segments:
            cache.set_many(segments, keys.HOT_TTL_S)
            result.segments += len(segments)
    result.seconds = time.perf_counter() - started
    log.info("cache warmed", extra=result.counts())
    return result


def _responses(
    conn: Connection, first: str, last: str, since: datetime
) -> tuple[dict[str, dict[str, int]], dict[str, set[str]]]:
    """Impressions per (customer, product) in the window and accepted products, for a range."""
    return (
        contacts.shown_counts(conn, since, (first, last)),
        contacts.accepted_products(conn, since, (first, last)),
    )


def _segments(conn: Connection, first: str, last: str) -> dict[str, str]:
    """`user:segment:{id}` values for the customers in a range, as `segment_of` caches them."""
    return {
        keys.user_segment(record.customer_id): dump_segment(segment_answer(record))
        for record in customers.segments_between(conn, first, last)
    }
