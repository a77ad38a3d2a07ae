"""Precompute every customer's next-best offers with the champion into a table, chunk by chunk."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING

import pandas as pd

from nextoffer.config import Settings
from nextoffer.domain.contact import ConsentFacts, decide, offer_allowed
from nextoffer.domain.errors import NextOfferError
from nextoffer.domain.offers import Catalogue, Offer
from nextoffer.domain.results import Counted
from nextoffer.features.training import current_features, load_products
from nextoffer.models.offer_model import OfferModel
from nextoffer.models.uplift import UpliftModel
from nextoffer.scoring.champions import Champion, load_uplift_champion
from nextoffer.scoring.contact import contact_rules
from nextoffer.scoring.offers import policy_from_settings, read_block, score_block
from nextoffer.scoring.uplift import ranking_model, ranks_by_uplift
from nextoffer.store import Engine, precomputed
from nextoffer.store import consent as consent_store
from nextoffer.store.reads.customers import ids_with_features
from nextoffer.store.runs import utcnow

if TYPE_CHECKING:
    from nextoffer.registry.mlflow_registry import ModelRegistry


@dataclass(frozen=True)
class Chunk:
    """An inclusive customer-id range: the unit of work of one precompute task."""

    first: str
    last: str
    customers: int


ChunkRunner = Callable[[list[Chunk], datetime], Iterator[tuple[int, int]]]
"""Runs chunks somewhere (here, or as Celery tasks) and yields (customers, with offers) of
each as it finishes, in any order."""


@dataclass
class PrecomputeResult(Counted):
    """What a precompute run did; `computed_at` is the instant every row of it carries."""

    COUNTED = ("customers", "with_offers", "chunks", "model_version", "computed_at")

    model_version: str
    customers: int = 0
    with_offers: int = 0
    chunks: int = 0
    seconds: float = 0.0
    computed_at: datetime | None = None
    chunk_counts: list[int] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the CLI and the job record."""
        return (
            f"precomputed offers for {self.customers:,} customers "
            f"({self.with_offers:,} with at least one) in {self.chunks} chunks "
            f"with offers {self.model_version} in {self.seconds:.1f} s"
        )


def plan_chunks(engine: Engine, rows_per_chunk: int) -> list[Chunk]:
    """Split the customers with features into id ranges of about `rows_per_chunk` customers."""
    ids = ids_with_features(engine)
    chunks = []
    for start in range(0, len(ids), rows_per_chunk):
        part = ids[start : start + rows_per_chunk]
        chunks.append(Chunk(part[0], part[-1], len(part)))
    return chunks


def load_catalogue(engine: Engine, champion: Champion[OfferModel]) -> Catalogue:
    """The product catalogue, checked to be the one the champion was trained on."""
    with engine.connect() as conn:
        catalogue = Catalogue.from_records(load_products(conn))
    if tuple(catalogue.product_ids) != tuple(champion.model.products.product_ids):
        # The model's columns are the catalogue it was trained on; a changed catalogue
        # needs a retrain first, or offers would be scored against the wrong products.
        raise NextOfferError(
            "the product catalogue changed since the offers champion was trained: "
            "run `nextoffer train` before precomputing"
        )
    return catalogue


def uplift_for_ranking(registry: ModelRegistry, settings: Settings) -> Champion[UpliftModel] | None:
    """The uplift champion when offers are ranked by uplift and there is one, else None."""
    if not ranks_by_uplift(settings) or registry.champion("uplift") is None:
        return None
    return load_uplift_champion(registry)


def precompute_chunk(
    engine: Engine,
    settings: Settings,
    champion: Champion[OfferModel],
    catalogue: Catalogue,
    chunk: Chunk,
    computed_at: datetime,
    uplift: Champion[UpliftModel] | None = None,
) -> tuple[int, int]:
    """Score one id range and replace its rows in `precomputed_offers`.

    Returns (customers scored, customers with at least one offer). `uplift` is the uplift
    champion, used only when NEXTOFFER_OFFER_RANKING=uplift (as in live answers).

    Delete-then-insert in one transaction: a re-run (a retried task) leaves exactly one row
    per customer, and customers no longer in the range disappear with the old rows.

    The contact policy applies as when serving, but for quiet hours (a matter of when the
    answer is served): customers who object to profiling are not scored at all (no row),
    a do-not-contact customer's row is empty, and an offer stays only if it is allowed in
    a channel the customer is open to.
    """
    policy = policy_from_settings(settings)
    with engine.connect() as conn:
        features = current_features(conn, between=(chunk.first, chunk.last))
        if features.empty:
            return 0, 0
        facts = consent_store.facts_between(conn, chunk.first, chunk.last)
        objecting = {c for c, f in facts.items() if f.objects_to_profiling}
        if objecting:
            features = features[~features["customer_id"].astype(str).isin(objecting)]
            features = features.reset_index(drop=True)
            if features.empty:
                precomputed.replace_range(engine, chunk.first, chunk.last, _EMPTY_FRAME)
                return 0, 0
        inputs = read_block(
            conn,
            champion.model,
            catalogue,
            policy,
            features,
            computed_at,
            segments=settings.segments,
            seed=settings.random_seed,
        )
    block = score_block(
        champion,
        catalogue,
        policy,
        inputs,
        k=settings.precompute_k,
        uplift=ranking_model(settings, uplift),
    )
    ids, offers = block.customer_ids, block.offers
    offers = [
        open_offers(catalogue, facts.get(str(c)), row, settings, computed_at)
        for c, row in zip(ids, offers, strict=True)
    ]
    frame = pd.DataFrame(
        {
            "customer_id": ids,
            "offers": [json.dumps([o.to_dict() for o in row]) for row in offers],
            "model_version": champion.label,
            "computed_at": pd.Timestamp(computed_at),
        }
    )
    precomputed.replace_range(engine, chunk.first, chunk.last, frame)
    return len(ids), sum(1 for o in offers if o)


_EMPTY_FRAME = pd.DataFrame(columns=["customer_id", "offers", "model_version", "computed_at"])


def open_offers(
    catalogue: Catalogue,
    facts: ConsentFacts | None,
    offers: list[Offer],
    settings: Settings,
    at: datetime,
) -> list[Offer]:
    """The offers allowed in a channel the customer is open to (quiet hours aside)."""
    if facts is None:
        return offers
    rules = replace(contact_rules(settings), quiet_hours={}, quiet_days={})
    decision = decide(facts, rules, at)
    if decision.open_everywhere:
        return offers
    return [
        o
        for o in offers
        if o.product_id in catalogue.product_ids
        and offer_allowed(catalogue.channels[catalogue.index(o.product_id)], decision.allowed)
    ]


def run_precompute(
    engine: Engine,
    settings: Settings,
    champion: Champion[OfferModel],
    *,
    progress: Callable[[int, int], None] | None = None,
    run_chunks: ChunkRunner | None = None,
    uplift: Champion[UpliftModel] | None = None,
) -> PrecomputeResult:
    """Precompute offers for every customer with features, chunk by chunk.

    `run_chunks` lets a caller fan the chunks out (Celery); by default they run here, one
    after the other. `progress(done, total)` is called after each chunk. `uplift` ranks
    retention offers when NEXTOFFER_OFFER_RANKING=uplift (`uplift_for_ranking`); a fan-out
    is given its version by the caller.
    """
    started = time.perf_counter()
    computed_at = utcnow()
    catalogue = load_catalogue(engine, champion)
    chunks = plan_chunks(engine, settings.precompute_chunk_rows)
    result = PrecomputeResult(model_version=champion.label, computed_at=computed_at)

    def inline(todo: list[Chunk], at: datetime) -> Iterator[tuple[int, int]]:
        for chunk in todo:
            yield precompute_chunk(engine, settings, champion, catalogue, chunk, at, uplift)

    for done, (count, with_offers) in enumerate(
        (run_chunks or inline)(chunks, computed_at), start=1
    ):
        result.chunk_counts.append(count)
        result.customers += count
        result.with_offers += with_offers
        if progress is not None:
            progress(done, len(chunks))
    result.chunks = len(chunks)
    # Rows of customers that no longer have features (none of the ranges covers them).
    precomputed.delete_older(engine, computed_at)
    result.seconds = time.perf_counter() - started
    return result
