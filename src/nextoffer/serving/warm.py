"""Filling the cache from the database in bulk: after a restore, a Redis loss or a new run."""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, func, select

from nextoffer.cache import keys
from nextoffer.cache.base import Cache
from nextoffer.config import Settings
from nextoffer.domain.offers import Offer, dump_offers
from nextoffer.domain.vocabulary import EventType
from nextoffer.scoring.offers import policy_from_settings
from nextoffer.serving.insights import SegmentAnswer, dump_segment
from nextoffer.serving.offers import offers_key, popular_lists, still_allowed
from nextoffer.serving.state import ServingState
from nextoffer.store.runs import utcnow
from nextoffer.store.schema import ContactHistory, Event, PrecomputedOffers, Segment, UserFeatures

log = logging.getLogger(__name__)


@dataclass
class WarmResult:
    """What a cache fill wrote."""

    popular_lists: int = 0
    segments: int = 0
    offers: int = 0
    seconds: float = 0.0

    def counts(self) -> dict[str, float]:
        """The result as job counts."""
        return {
            "popular_lists": self.popular_lists,
            "segments": self.segments,
            "offers": self.offers,
            "seconds": round(self.seconds, 3),
        }


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
            rows = conn.execute(
                select(
                    PrecomputedOffers.customer_id,
                    PrecomputedOffers.offers,
                    PrecomputedOffers.model_version,
                )
                .where(PrecomputedOffers.customer_id > after)
                .order_by(PrecomputedOffers.customer_id)
                .limit(chunk_rows)
            ).all()
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
            stored = row.offers if isinstance(row.offers, list) else json.loads(row.offers)
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
    shown: dict[str, dict[str, int]] = defaultdict(dict)
    for customer, product, count in conn.execute(
        select(ContactHistory.customer_id, ContactHistory.product_id, func.count())
        .where(
            ContactHistory.customer_id.between(first, last),
            ContactHistory.contacted_at >= since,
        )
        .group_by(ContactHistory.customer_id, ContactHistory.product_id)
    ):
        shown[str(customer)][str(product)] = int(count)
    accepted: dict[str, set[str]] = defaultdict(set)
    for customer_id, accepted_product in conn.execute(
        select(Event.customer_id, Event.product_id).where(
            Event.customer_id.between(first, last),
            Event.ts >= since,
            Event.event_type == EventType.OFFER_ACCEPT.value,
        )
    ):
        if accepted_product:
            accepted[str(customer_id)].add(str(accepted_product))
    return shown, accepted


def _segments(conn: Connection, first: str, last: str) -> dict[str, str]:
    """`user:segment:{id}` values for the customers in a range, as `segment_of` caches them."""
    rows = conn.execute(
        select(
            UserFeatures.customer_id,
            UserFeatures.segment_id,
            UserFeatures.as_of,
            Segment.segment_id.label("known"),
            Segment.name,
            Segment.description,
            Segment.size,
        )
        .join(Segment, Segment.segment_id == UserFeatures.segment_id, isouter=True)
        .where(UserFeatures.customer_id.between(first, last), UserFeatures.segment_id.is_not(None))
    ).all()
    out: dict[str, str] = {}
    for customer_id, segment_id, as_of, known, name, description, size in rows:
        answer = SegmentAnswer(
            customer_id=customer_id,
            segment_id=int(segment_id or 0),
            name=name if known is not None else f"segment {segment_id}",
            description=description if known is not None else "",
            size=int(size) if known is not None else 0,
            features_as_of=as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC),
        )
        out[keys.user_segment(customer_id)] = dump_segment(answer)
    return out
