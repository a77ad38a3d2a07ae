"""Read-side answers besides offers: churn risk and its history, segment, similar products.

pandas, SciPy and the offers model's libraries are imported by the answers that need them
(an on-demand churn explanation, similar products), not with this module.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from nextoffer.cache import Cache, CacheUnavailableError, keys
from nextoffer.domain.errors import NotFoundError
from nextoffer.domain.results import from_attributes
from nextoffer.scoring.churn import live_reasons
from nextoffer.serving.state import ServingState
from nextoffer.store.reads import catalogue as catalogue_reads
from nextoffer.store.reads import churn as churn_reads
from nextoffer.store.reads import customers
from nextoffer.store.reads.features import feature_rows

if TYPE_CHECKING:
    from nextoffer.store import Engine

HISTORY_POINTS = 52
# Recommenders whose scores say "customers who hold X also take Y", best first.
SIMILARITY_MODELS = ("item_knn", "ease", "als")


@dataclass(frozen=True)
class RiskPoint:
    """One point of a customer's churn-risk history."""

    scored_at: datetime
    score: float
    band: str
    model_version: str


@dataclass(frozen=True)
class ChurnRisk:
    """A customer's latest churn risk, why, and how it moved."""

    customer_id: str
    score: float
    band: str
    scored_at: datetime
    model_version: str
    top_reasons: list[dict[str, Any]]
    history: list[RiskPoint]


@dataclass(frozen=True)
class SegmentAnswer:
    """The segment a customer belongs to."""

    customer_id: str
    segment_id: int
    name: str
    description: str
    size: int
    features_as_of: datetime


@dataclass(frozen=True)
class SimilarProduct:
    """A product often taken by the holders of another one."""

    product_id: str
    name: str
    category: str
    similarity: float


def churn_risk(
    engine: Engine, state: ServingState, customer_id: str, history: int = HISTORY_POINTS
) -> ChurnRisk:
    """Latest score with its top reasons (explained now when batch scoring skipped them)."""
    with engine.connect() as conn:
        rows = churn_reads.score_history(conn, customer_id, history)
        return _churn_risk(conn, state, customer_id, rows)


def churn_risks(
    engine: Engine, state: ServingState, customer_ids: Sequence[str], history: int = HISTORY_POINTS
) -> list[ChurnRisk | NotFoundError]:
    """`churn_risk` of each customer, in order, the histories read in one statement.

    An unknown or unscored customer's NotFoundError stands in its place.
    """
    out: list[ChurnRisk | NotFoundError] = []
    with engine.connect() as conn:
        found = churn_reads.score_histories(conn, customer_ids, history)
        for customer_id in customer_ids:
            try:
                out.append(_churn_risk(conn, state, customer_id, found.get(customer_id, [])))
            except NotFoundError as exc:
                out.append(exc)
    return out


def _churn_risk(
    conn: Any, state: ServingState, customer_id: str, rows: list[churn_reads.ScoreRecord]
) -> ChurnRisk:
    """The answer from the customer's score history (newest first); explains on demand."""
    if not rows:
        _require_customer(conn, customer_id)
        raise NotFoundError(f"customer {customer_id!r} has no churn score yet")
    latest = rows[0]
    reasons = latest.top_reasons
    if not reasons and state.churn is not None:
        # Batch scoring explains only the medium and high bands; explain on demand, from
        # the stored feature row (no pandas: the lean model reads plain mappings).
        found = feature_rows(conn, [customer_id])
        if found:
            reasons = live_reasons(state.churn.model, found)[0]
    points = [RiskPoint(r.scored_at, r.score, r.band, r.model_version) for r in reversed(rows)]
    return ChurnRisk(
        customer_id=customer_id,
        score=latest.score,
        band=latest.band,
        scored_at=latest.scored_at,
        model_version=latest.model_version,
        top_reasons=list(reasons or []),
        history=points,
    )


def segment_of(engine: Engine, cache: Cache, customer_id: str) -> SegmentAnswer:
    """The customer's segment (cached under `user:segment:{id}` for an hour)."""
    key = keys.user_segment(customer_id)
    try:
        cached = cache.get(key)
    except CacheUnavailableError:
        cached = None
    if cached is not None:
        data = json.loads(cached)
        data["features_as_of"] = datetime.fromisoformat(data["features_as_of"])
        return SegmentAnswer(**data)
    with engine.connect() as conn:
        record = customers.segment_of(conn, customer_id)
        if record is None:
            _require_customer(conn, customer_id)
            raise NotFoundError(f"customer {customer_id!r} has no segment yet (run features)")
    answer = segment_answer(record)
    with contextlib.suppress(CacheUnavailableError):
        cache.set(key, dump_segment(answer), keys.HOT_TTL_S)
    return answer


def dump_segment(answer: SegmentAnswer) -> str:
    """A segment answer as the JSON text cached under `user:segment:{id}`."""
    data = asdict(answer)
    data["features_as_of"] = answer.features_as_of.isoformat()
    return json.dumps(data)


def similar_products(
    engine: Engine, state: ServingState, product_id: str, k: int
) -> tuple[str, list[SimilarProduct]]:
    """(method, products most often taken with `product_id`) from the champion's recommenders.

    The product is put alone in a customer's history and scored by the item-to-item model
    the champion carries (item-kNN, else EASE, else ALS); the answer is what such a customer
    would be recommended next.
    """
    import scipy.sparse as sp

    from nextoffer.models.catalog import POPULARITY_KINDS

    if not catalogue_reads.product_exists(engine, product_id):
        raise NotFoundError(f"no product {product_id!r}")
    champion = state.offers
    if champion is None:
        raise NotFoundError("no offers model yet: similar products come from a trained model")
    model = champion.model
    ids = list(model.products.product_ids)
    if product_id not in ids:
        raise NotFoundError(f"product {product_id!r} is newer than the offers model")
    name = next((n for n in SIMILARITY_MODELS if n in model.recommenders), None)
    if name is None:
        name = next(n for n in model.recommenders if n not in POPULARITY_KINDS)
    recommender = model.recommenders[name]
    col = ids.index(product_id)
    history = sp.csr_matrix(
        (np.ones(1, np.float32), (np.zeros(1, np.int64), np.array([col]))), shape=(1, len(ids))
    )
    scores = np.asarray(recommender.score_block(history, np.array([-1])), np.float64)[0]
    scores[col] = -np.inf
    order = [int(i) for i in np.argsort(-scores, kind="stable")[:k] if np.isfinite(scores[i])]
    top = max((scores[i] for i in order), default=1.0) or 1.0
    products = model.products
    catalogue = state.catalogue
    out = []
    for i in order:
        pid = ids[i]
        label, category = pid, ""
        if catalogue is not None and pid in catalogue.product_ids:
            j = catalogue.index(pid)
            label, category = str(catalogue.names[j]), str(catalogue.categories[j])
        else:
            category = str(products.categories[i])
        out.append(SimilarProduct(pid, label, category, round(float(scores[i] / top), 6)))
    return name, out


def segment_answer(record: customers.SegmentRecord) -> SegmentAnswer:
    """A stored segment membership as the answer served and cached."""
    return from_attributes(SegmentAnswer, record)


def _require_customer(conn: Any, customer_id: str) -> None:
    if not customers.customer_exists(conn, customer_id):
        raise NotFoundError(f"no customer {customer_id!r}")
