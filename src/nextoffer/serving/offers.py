"""The offers answer chain: cache → precomputed → live champion → segment popular → popular.

Every answer carries `domain.offers.Offer`s: the shape precompute stores, the cache holds
and the API's `OfferOut` reads. pandas is imported inside the steps that need a feature
frame (live scoring, the popular fallback), never when this module is imported.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np

from nextoffer.cache import Cache, CacheUnavailableError, keys
from nextoffer.cache.deferred import DeferredDeletes
from nextoffer.config import Settings
from nextoffer.domain.errors import NotFoundError
from nextoffer.domain.experiments import Strategy, Variant
from nextoffer.domain.offers import (
    Catalogue,
    Customers,
    Offer,
    OfferPolicy,
    arbitrate,
    dump_offers,
    load_offers,
)
from nextoffer.scoring.champions import Champion
from nextoffer.scoring.offers import (
    customer_features,
    customers_for,
    policy_from_settings,
    read_block,
    read_live,
    score_block,
    score_live,
)
from nextoffer.scoring.uplift import ranking_model
from nextoffer.serving.state import ServingState
from nextoffer.store import DatabaseError, Engine, precomputed
from nextoffer.store.reads import catalogue as catalogue_reads
from nextoffer.store.reads import contacts, customers
from nextoffer.store.reads.features import feature_rows
from nextoffer.store.runs import utcnow

if TYPE_CHECKING:
    import pandas as pd

    from nextoffer.models.lean_offers import LeanOfferModel, ServedOfferModel

log = logging.getLogger(__name__)

POPULAR_WINDOW_DAYS = 90
POPULAR_REASON = "popular with customers like you"
GLOBAL = "all"


class Source(StrEnum):
    """Where an answer came from."""

    CACHE = "cache"
    PRECOMPUTED = "precomputed"
    LIVE = "live"
    FALLBACK = "fallback"
    POPULAR = "popular"
    """An experiment variant that serves popular products on purpose."""
    CONTROL = "control"
    """Held out (the universal control group, or an experiment's control variant): no offer
    shown; the answer the treatment would have given is kept in `OffersAnswer.withheld`."""
    CONTACT_POLICY = "contact_policy"
    """Nothing may be offered: no consent, do not contact, do not call or quiet hours
    (`OffersAnswer.withheld_reason` says which); no offer was computed."""


@dataclass(frozen=True)
class ExperimentTag:
    """Which experiment and variant shaped an answer."""

    experiment_id: str
    variant: str
    strategy: str


@dataclass
class OffersAnswer:
    """The next-best offers for one customer and how they were found.

    The API's `OffersOut` validates it directly (attribute by attribute).
    """

    customer_id: str
    offers: list[Offer]
    source: Source
    model_version: str | None
    degraded: bool = False
    notes: list[str] = field(default_factory=list)
    experiment: ExperimentTag | None = None
    control: bool = False
    """True when the customer is held out: `offers` is empty and `withheld` holds the rest."""
    withheld: list[Offer] = field(default_factory=list)
    """For a held-out customer, the answer the treatment would have given (logged in its
    exposure, never shown: the API's `OffersOut` has no such field)."""
    withheld_reason: str | None = None
    """Why the contact policy leaves nothing to offer (`domain.contact.Withheld`), else None."""


class OfferService:
    """Answers `GET /v1/customers/{id}/offers`: fast when it can, never empty-handed.

    Each step may fail (Redis down, database down, no champion yet); the next one then
    answers and the answer is flagged `degraded`. Only an unknown customer is an error.
    """

    def __init__(
        self,
        engine: Engine,
        cache: Cache,
        state: ServingState,
        settings: Settings,
        on_source: Callable[[str], None] | None = None,
        on_cache: Callable[[bool | None], None] | None = None,
        primary: Engine | None = None,
    ) -> None:
        self.engine = engine
        # With `engine` on a read replica: impressions and accepts are written to the
        # primary and read there, so no answer (cached for an hour) offers what was
        # accepted a moment ago while the replica catches up.
        self.primary = primary
        self.cache = cache
        self.state = state
        self.settings = settings
        self.policy: OfferPolicy = policy_from_settings(settings)
        self._on_source = on_source or (lambda _s: None)
        self._on_cache = on_cache or (lambda _h: None)
        self._drops = DeferredDeletes(cache, keys.OFFERS_PREFIX)
        # Last known popular lists, for when both the cache and the database are down.
        self._popular_memo: dict[str, list[tuple[str, float]]] = {}

    # -- the chain ---------------------------------------------------------------------

    def offers(
        self,
        customer_id: str,
        *,
        k: int,
        channel: str | None = None,
        variant: Variant | None = None,
        experiment_id: str | None = None,
        withhold: bool = False,
        channels: frozenset[str] | None = None,
        popular_only: bool = False,
    ) -> OffersAnswer:
        """The customer's next-best offers, best first, at most k, allowed in `channel`.

        `withhold` (the universal control group), like an experiment variant of strategy
        control, computes the champion's answer through every filter and then holds it
        back: `offers` empty, `control` true, the answer kept in `withheld`. `channels`
        (the contact policy's open channels) keeps only offers allowed in one of them;
        `popular_only` (a customer who objects to profiling) answers with segment-free
        popular products, never a model or a segment.
        """
        if popular_only:
            answer = self._popular(customer_id, per_segment=False)
            answer.source = Source.POPULAR
        else:
            answer = self._answer(customer_id, variant)
        if variant is not None and experiment_id is not None:
            answer.experiment = ExperimentTag(experiment_id, variant.name, variant.strategy.value)
        offers = self._for_channel(answer.offers, channel)
        if channels is not None:
            offers = self._for_channels(offers, channels)
        answer.offers = offers[:k]
        if withhold or (variant is not None and variant.strategy is Strategy.CONTROL):
            answer.withheld, answer.offers = answer.offers, []
            answer.control = True
            answer.source = Source.CONTROL
        self._on_source(answer.source.value)
        return answer

    def _answer(self, customer_id: str, variant: Variant | None) -> OffersAnswer:
        strategy = Strategy.CHAMPION if variant is None else variant.strategy
        # A control variant is measured on what the champion would have offered.
        if strategy in (Strategy.SEGMENT_POPULAR, Strategy.POPULAR):
            answer = self._popular(customer_id, per_segment=strategy == Strategy.SEGMENT_POPULAR)
            answer.source = Source.POPULAR
            return answer
        champion = self.state.offers
        if strategy == Strategy.MODEL_VERSION and variant and variant.model_version is not None:
            try:
                champion = self.state.pinned_offers_model(variant.model_version)
            except Exception as exc:
                log.error("experiment model v%s unavailable: %s", variant.model_version, exc)
                answer = self._popular(customer_id, per_segment=True)
                answer.degraded = True
                answer.notes.append(f"model v{variant.model_version} unavailable")
                return answer
        return self._champion_chain(customer_id, champion)

    def _champion_chain(
        self, customer_id: str, champion: Champion[ServedOfferModel] | None
    ) -> OffersAnswer:
        notes: list[str] = []
        label = champion.label if champion else None
        key = offers_key(customer_id, self.state.stamp, label)
        # Answers forgotten during a cache outage go before any is read again.
        cached = self._cache_get(key, notes) if self._drops.flush() else None
        if cached is None and self._drops.pending:
            _note(notes, "cache unavailable")
        if cached is not None:
            offers = load_offers(cached)
            return OffersAnswer(customer_id, offers, Source.CACHE, label, bool(notes), notes)
        found = self._from_database(customer_id, champion, notes)
        if found is not None:
            source, offers = found
            self._cache_set(key, dump_offers(offers), notes)
            return OffersAnswer(customer_id, offers, source, label, bool(notes), notes)
        answer = self._popular(customer_id, per_segment=True)
        answer.notes = notes + answer.notes
        answer.degraded = answer.degraded or bool(notes)
        return answer

    def _from_database(
        self, customer_id: str, champion: Champion[ServedOfferModel] | None, notes: list[str]
    ) -> tuple[Source, list[Offer]] | None:
        """Precomputed offers, else live scoring; None when neither can answer."""
        try:
            if champion is not None and champion is self.state.offers:
                stored = self._precomputed(customer_id, champion.label)
                if stored is not None:
                    return Source.PRECOMPUTED, stored
            if champion is None:
                notes.append("no offers model yet")
                self._require_customer(customer_id)
                return None
            live = self._live(customer_id, champion)
            if live is None:
                self._require_customer(customer_id)
                notes.append("no features for this customer yet")
                return None
            return Source.LIVE, live
        except DatabaseError as exc:
            log.warning("database unavailable for offers: %s", _first_line(exc))
            notes.append("database unavailable")
            return None

    def _precomputed(self, customer_id: str, label: str) -> list[Offer] | None:
        with self.engine.connect() as conn:
            stored = precomputed.for_customer(conn, customer_id)
            if stored is None or stored.model_version != label:
                return None
            offers = [Offer.from_dict(o) for o in stored.offers]
            # Precomputed rows are hours old: respect contacts and accepts made since.
            shown, accepted = self._recent_responses(conn, customer_id)
        return still_allowed(offers, shown, accepted, self.policy.contact_cap)

    def _live(self, customer_id: str, champion: Champion[ServedOfferModel]) -> list[Offer] | None:
        from nextoffer.models.lean_offers import LeanOfferModel

        catalogue = self.state.catalogue
        if catalogue is None or tuple(catalogue.product_ids) != tuple(
            champion.model.products.product_ids
        ):
            return None
        uplift = ranking_model(self.settings, self.state.uplift)
        model = champion.model
        if uplift is None and isinstance(model, LeanOfferModel):
            return self._live_lean(customer_id, Champion(model, champion.version), catalogue)
        # The uplift ranking and a model the lean form cannot read take the full stack.
        now = utcnow()
        with self.engine.connect() as conn:
            features = self._features(conn, customer_id)
            if features.empty:
                return None
            inputs = read_block(
                conn,
                champion.model,
                catalogue,
                self.policy,
                features,
                now,
                segments=self.settings.segments,
                seed=self.settings.random_seed,
            )
            _, accepted = self._recent_responses(conn, customer_id)
        block = score_block(
            champion, catalogue, self.policy, inputs, k=self.settings.precompute_k, uplift=uplift
        )
        return [o for o in block.offers[0] if o.product_id not in accepted]

    def _live_lean(
        self, customer_id: str, champion: Champion[LeanOfferModel], catalogue: Catalogue
    ) -> list[Offer] | None:
        """The live answer without pandas: feature row as a dict, numpy trees."""
        now = utcnow()
        with self.engine.connect() as conn:
            row = self._feature_row(conn, customer_id)
            if row is None:
                return None
            inputs = read_live(conn, champion.model, catalogue, self.policy, [row], now)
            accepted = self._recent_accepts(conn, customer_id)
        block = score_live(champion, catalogue, self.policy, inputs, k=self.settings.precompute_k)
        return [o for o in block.offers[0] if o.product_id not in accepted]

    def _feature_row(self, conn: Any, customer_id: str) -> dict[str, Any] | None:
        """The customer's feature row as a dict, from `user:features:{id}` when cached."""
        notes: list[str] = []
        key = keys.user_features(customer_id)
        cached = self._cache_get(key, notes, count=False)
        if cached is not None:
            return dict(json.loads(cached))
        rows = feature_rows(conn, [customer_id])
        if not rows:
            return None
        row = rows[0]
        # The same JSON `_features` caches: either path reads what the other wrote.
        self._cache_set(key, json.dumps(row, default=_plain_json), notes, ttl=keys.HOT_TTL_S)
        return row

    def _features(self, conn: Any, customer_id: str) -> pd.DataFrame:
        """The customer's feature row, from `user:features:{id}` when cached."""
        import pandas as pd

        notes: list[str] = []
        key = keys.user_features(customer_id)
        cached = self._cache_get(key, notes, count=False)
        if cached is not None:
            frame = pd.DataFrame([json.loads(cached)])
            frame["as_of"] = pd.to_datetime(frame["as_of"], utc=True)
            return frame
        frame = customer_features(conn, customer_id)
        if not frame.empty:
            row = frame.iloc[0].to_dict()
            row["as_of"] = pd.Timestamp(row["as_of"]).isoformat()
            self._cache_set(key, json.dumps(row, default=_jsonable), notes, ttl=keys.HOT_TTL_S)
        return frame

    def _recent_responses(self, conn: Any, customer_id: str) -> tuple[dict[str, int], set[str]]:
        """Impressions per product within the contact window, and products accepted in it."""
        since = self.policy.window_start(utcnow())
        one = (customer_id, customer_id)
        if self.primary is not None:
            with self.primary.connect() as primary:
                shown = contacts.shown_counts(primary, since, one).get(customer_id, {})
                accepted = contacts.accepted_products(primary, since, one).get(customer_id, set())
            return shown, accepted
        shown = contacts.shown_counts(conn, since, one).get(customer_id, {})
        accepted = contacts.accepted_products(conn, since, one).get(customer_id, set())
        return shown, accepted

    def _recent_accepts(self, conn: Any, customer_id: str) -> set[str]:
        """`_recent_responses`' accepted products alone: live scoring read the impressions."""
        since = self.policy.window_start(utcnow())
        one = (customer_id, customer_id)
        if self.primary is not None:
            with self.primary.connect() as primary:
                return contacts.accepted_products(primary, since, one).get(customer_id, set())
        return contacts.accepted_products(conn, since, one).get(customer_id, set())

    # -- fallbacks ---------------------------------------------------------------------

    def _popular(self, customer_id: str, *, per_segment: bool) -> OffersAnswer:
        """Popular products (in the customer's segment when known), after business rules."""
        import pandas as pd

        notes: list[str] = []
        try:
            with self.engine.connect() as conn:
                features = customer_features(conn, customer_id)
                if features.empty:
                    self._require_customer(customer_id, conn=conn)
                segment = None
                if per_segment and not features.empty:
                    seg = features["segment_id"].iloc[0]
                    segment = None if pd.isna(seg) else str(int(seg))
                popular = self._popular_list(conn, segment, notes)
                held = customers.held_products(conn, customer_id)
        except DatabaseError as exc:
            log.warning("database unavailable for fallback offers: %s", _first_line(exc))
            notes.append("database unavailable")
            popular = self._popular_memo.get(GLOBAL, [])
            return OffersAnswer(
                customer_id,
                self._unfiltered(popular),
                Source.FALLBACK,
                None,
                True,
                notes,
            )
        offers = self._arbitrate_popular(popular, features, held)
        return OffersAnswer(customer_id, offers, Source.FALLBACK, None, bool(notes), notes)

    def _popular_list(
        self, conn: Any, segment: str | None, notes: list[str]
    ) -> list[tuple[str, float]]:
        name = segment or GLOBAL
        cached = self._cache_get(keys.segment_popular(name), notes, count=False)
        if cached is not None:
            return [(str(p), float(s)) for p, s in json.loads(cached)]
        lists = popular_lists(conn)
        self._popular_memo.update(lists)
        self._cache_set_many(
            {keys.segment_popular(seg): json.dumps(items) for seg, items in lists.items()},
            notes,
        )
        return lists.get(name) or lists.get(GLOBAL, [])

    def _arbitrate_popular(
        self,
        popular: Sequence[tuple[str, float]],
        features: pd.DataFrame,
        held: set[str],
    ) -> list[Offer]:
        catalogue = self.state.catalogue
        if catalogue is None:
            return self._unfiltered(popular, exclude=held)
        propensity = np.full((1, catalogue.n_products), np.nan)
        for product_id, share in popular:
            if product_id in catalogue.product_ids:
                propensity[0, catalogue.index(product_id)] = min(1.0, max(0.0, share))
        held_row = catalogue.holdings(p for p in held if p in catalogue.product_ids)
        if features.empty:
            # Unknown profile: no eligibility facts, only "not held" and "active" apply.
            customers = Customers.single(
                contract_type="", region="", tenure_months=1e9, held=held_row
            )
        else:
            # The same view as live scoring: held categories, attributes for product rules.
            customers = customers_for(
                features.iloc[:1], held_row.reshape(1, -1), np.array([np.nan])
            )
        codes = np.where(np.isnan(propensity), -1, 0).astype(np.int32)
        slate = arbitrate(
            propensity,
            catalogue,
            customers,
            channel=None,
            contacts_in_window=None,
            policy=self.policy,
            k=self.settings.precompute_k,
            reason_codes=codes,
            reason_texts=(POPULAR_REASON,),
        )
        return slate.offers(0, "popular")

    def _unfiltered(
        self, popular: Sequence[tuple[str, float]], exclude: set[str] | None = None
    ) -> list[Offer]:
        """Popular products without business rules: only when nothing else is known."""
        catalogue = self.state.catalogue
        out = []
        for product_id, share in popular:
            if exclude and product_id in exclude:
                continue
            name, category = product_id, ""
            if catalogue is not None and product_id in catalogue.product_ids:
                i = catalogue.index(product_id)
                if not catalogue.active[i]:
                    continue
                name, category = str(catalogue.names[i]), str(catalogue.categories[i])
            out.append(
                Offer(product_id, name, category, share, share, 0.0, (POPULAR_REASON,), "popular")
            )
            if len(out) >= self.settings.precompute_k:
                break
        return out

    def _for_channel(self, offers: list[Offer], channel: str | None) -> list[Offer]:
        catalogue = self.state.catalogue
        if channel is None or catalogue is None:
            return offers
        allowed = catalogue.channel_allowed(channel)
        return [
            o
            for o in offers
            if o.product_id in catalogue.product_ids and allowed[catalogue.index(o.product_id)]
        ]

    def _for_channels(self, offers: list[Offer], channels: frozenset[str]) -> list[Offer]:
        """Offers allowed in at least one of `channels` (without a catalogue: none, to be safe)."""
        catalogue = self.state.catalogue
        if catalogue is None or not channels:
            return []
        allowed = np.zeros(catalogue.n_products, dtype=bool)
        for channel in channels:
            allowed |= catalogue.channel_allowed(channel)
        return [
            o
            for o in offers
            if o.product_id in catalogue.product_ids and allowed[catalogue.index(o.product_id)]
        ]

    # -- helpers -----------------------------------------------------------------------

    def _require_customer(
        self, customer_id: str, *, conn: Any = None, degraded_ok: bool = False
    ) -> None:
        """Raise NotFoundError for an unknown customer (skipped when the database is down)."""
        try:
            if conn is None:
                with self.engine.connect() as own:
                    exists = customers.customer_exists(own, customer_id)
            else:
                exists = customers.customer_exists(conn, customer_id)
        except DatabaseError:
            if degraded_ok:
                return
            raise
        if not exists:
            raise NotFoundError(f"no customer {customer_id!r}")

    def _cache_get(self, key: str, notes: list[str], *, count: bool = True) -> str | None:
        try:
            value = self.cache.get(key)
        except CacheUnavailableError:
            _note(notes, "cache unavailable")
            if count:
                self._on_cache(None)
            return None
        if count:
            self._on_cache(value is not None)
        return value

    def _cache_set(self, key: str, value: str, notes: list[str], ttl: float | None = None) -> None:
        try:
            self.cache.set(key, value, ttl or self.settings.offers_cache_ttl_s)
        except CacheUnavailableError:
            _note(notes, "cache unavailable")

    def _cache_set_many(self, items: dict[str, str], notes: list[str]) -> None:
        try:
            self.cache.set_many(items, keys.HOT_TTL_S)
        except CacheUnavailableError:
            _note(notes, "cache unavailable")

    def invalidate(self) -> None:
        """Drop every cached offers answer (after a promotion)."""
        with contextlib.suppress(CacheUnavailableError):
            self.cache.delete_prefix(keys.OFFERS_PREFIX)

    def forget(self, customer_id: str) -> None:
        """Drop the customer's cached offers (after an impression or an accept).

        Every model that may have answered is covered: the champion and the versions
        pinned by experiment variants.
        """
        labels = [self.state.offers.label if self.state.offers else None]
        labels += [f"v{version}" for version in self.state.pinned_versions()]
        stamp = self.state.stamp
        # With the cache away, the drop waits for it: never lost (cache/deferred.py).
        self._drops.delete(offers_key(customer_id, stamp, label) for label in labels)

    def flush_pending(self) -> bool:
        """Drop the answers forgotten while the cache was away; False while it still is."""
        return self._drops.flush()


def still_allowed(
    offers: Sequence[Offer], shown: Mapping[str, int], accepted: set[str], contact_cap: int
) -> list[Offer]:
    """Stored offers minus those shown `contact_cap` times or accepted since they were scored."""
    return [
        o
        for o in offers
        if shown.get(o.product_id, 0) < contact_cap and o.product_id not in accepted
    ]


def offers_key(customer_id: str, stamp: str, label: str | None) -> str:
    """The cache key of a customer's champion answer under the serving state's stamp."""
    return keys.offers(customer_id, f"{stamp}.{label}")


def popular_lists(conn: Any, top: int = 20) -> dict[str, list[tuple[str, float]]]:
    """Most acquired products of the last 90 days of data, per segment and overall.

    Each list holds (product_id, share of that group's acquisitions), best first. The
    window ends at the newest transaction, not now, so an old extract still has a list.
    """
    import pandas as pd

    from nextoffer.features.training import ACQUISITIONS

    rows = catalogue_reads.acquisitions_by_segment(
        conn, [t.value for t in ACQUISITIONS], timedelta(days=POPULAR_WINDOW_DAYS)
    )
    if not rows:
        return {GLOBAL: []}
    frame = pd.DataFrame(rows, columns=["segment", "product_id", "n"])
    out: dict[str, list[tuple[str, float]]] = {}
    groups = [(GLOBAL, frame.groupby("product_id")["n"].sum())]
    for segment, part in frame.dropna(subset=["segment"]).groupby("segment"):
        groups.append((str(int(float(str(segment)))), part.set_index("product_id")["n"]))
    for name, counts in groups:
        total = float(counts.sum()) or 1.0
        best = counts.sort_values(ascending=False).head(top)
        out[name] = [(str(p), round(float(n) / total, 6)) for p, n in best.items()]
    return out


def _note(notes: list[str], text: str) -> None:
    if text not in notes:
        notes.append(text)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _plain_json(value: Any) -> Any:
    """JSON for a feature row's values without pandas (dates ISO, like `_jsonable`)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, date | datetime):
        return value.isoformat()
    return str(value)


def _jsonable(value: Any) -> Any:
    import pandas as pd

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return str(value)
