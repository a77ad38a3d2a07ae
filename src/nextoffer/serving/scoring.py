"""Score next-best offers for a block of customers: one function for precompute and live API."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, func, select

from nextoffer.config import Settings
from nextoffer.domain.offers import (
    Catalogue,
    Customers,
    OfferPolicy,
    OfferSlate,
    arbitrate,
)
from nextoffer.features.training import Snapshot, build_snapshot, current_features, id_range
from nextoffer.models.offer_model import OfferModel
from nextoffer.store.schema import ChurnScore, ContactHistory

HELD_COLUMNS = ("mobile_held", "broadband_held", "addons_held", "devices_held", "bundles_held")
"""Feature columns counting held products per category, in `CATEGORIES` order."""


@dataclass(frozen=True)
class OfferView:
    """One offer as the API shows it and as the cache and precomputed table store it."""

    product_id: str
    name: str
    category: str
    score: float
    propensity: float
    expected_value: float
    reasons: list[str]
    model_version: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the stored and cached shape), in field order.

        Spelled out rather than `dataclasses.asdict`, which deep-copies recursively and was
        most of the time of a cache rebuild (a million offers at 100 000 customers).
        """
        return {
            "product_id": self.product_id,
            "name": self.name,
            "category": self.category,
            "score": self.score,
            "propensity": self.propensity,
            "expected_value": self.expected_value,
            "reasons": list(self.reasons),
            "model_version": self.model_version,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OfferView:
        """Back from the stored shape."""
        return cls(
            product_id=str(data["product_id"]),
            name=str(data["name"]),
            category=str(data["category"]),
            score=float(data["score"]),
            propensity=float(data["propensity"]),
            expected_value=float(data["expected_value"]),
            reasons=[str(r) for r in data.get("reasons", [])],
            model_version=str(data["model_version"]),
        )


def dump_offers(offers: Sequence[OfferView]) -> str:
    """Offers as compact JSON text (cache values)."""
    return json.dumps([o.to_dict() for o in offers], separators=(",", ":"))


def load_offers(text: str) -> list[OfferView]:
    """Offers from `dump_offers` text."""
    return [OfferView.from_dict(d) for d in json.loads(text)]


def policy_from_settings(settings: Settings) -> OfferPolicy:
    """The business knobs of arbitration as configured."""
    return OfferPolicy(
        value_weight=settings.offer_value_weight,
        contact_cap=settings.contact_cap,
        contact_window_days=settings.contact_window_days,
        high_churn_risk=settings.churn_bands[1],
    )


def customers_for(features: pd.DataFrame, held: np.ndarray, churn_risk: np.ndarray) -> Customers:
    """Arbitration's view of the customers: holdings, held categories and churn risk."""
    return Customers(
        contract_type=features["contract_type"].to_numpy(dtype=object),
        region=features["region"].to_numpy(dtype=object),
        tenure_months=pd.to_numeric(features["tenure_months"], errors="coerce").to_numpy(float),
        held=held,
        churn_risk=churn_risk,
        held_categories=features.loc[:, list(HELD_COLUMNS)].fillna(0).to_numpy() > 0,
    )


def contacts_in_window(
    conn: Connection,
    customer_ids: np.ndarray,
    catalogue: Catalogue,
    since: datetime,
    *,
    only_listed: bool,
) -> np.ndarray:
    """Customers × products: how often each offer was shown since `since`."""
    query = (
        select(ContactHistory.customer_id, ContactHistory.product_id, func.count())
        .where(ContactHistory.contacted_at >= since)
        .group_by(ContactHistory.customer_id, ContactHistory.product_id)
    )
    bounds = id_range(pd.Series(customer_ids)) if only_listed else None
    if bounds:
        query = query.where(ContactHistory.customer_id.between(*bounds))
    rows = conn.execute(query).all()
    position = {str(c): i for i, c in enumerate(customer_ids)}
    ci, pi, counts = [], [], []
    for customer_id, product_id, count in rows:
        row = position.get(str(customer_id))
        if row is None or product_id not in catalogue.product_ids:
            continue
        ci.append(row)
        pi.append(catalogue.index(str(product_id)))
        counts.append(int(count))
    matrix = np.zeros((len(customer_ids), catalogue.n_products), dtype=np.int32)
    if ci:
        np.add.at(matrix, (np.array(ci), np.array(pi)), np.array(counts, dtype=np.int32))
    return matrix


def latest_churn_risk(
    conn: Connection, customer_ids: np.ndarray, *, only_listed: bool
) -> np.ndarray:
    """Each customer's most recent churn score (NaN when never scored)."""
    bounds = id_range(pd.Series(customer_ids)) if only_listed else None
    newest = select(ChurnScore.customer_id, func.max(ChurnScore.scored_at).label("at"))
    if bounds:
        # Bounded inside the grouping too: a bound on the outer query alone is not pushed
        # into it, and every score of every customer would be grouped for each live answer.
        newest = newest.where(ChurnScore.customer_id.between(*bounds))
    newest_at = newest.group_by(ChurnScore.customer_id).subquery()
    query = select(ChurnScore.customer_id, ChurnScore.score).join(
        newest_at,
        (ChurnScore.customer_id == newest_at.c.customer_id)
        & (ChurnScore.scored_at == newest_at.c.at),
    )
    if bounds:
        query = query.where(ChurnScore.customer_id.between(*bounds))
    scores = {str(customer): float(score) for customer, score in conn.execute(query).all()}
    return np.array([scores.get(str(c), np.nan) for c in customer_ids], dtype=np.float64)


def load_block(
    conn: Connection,
    model: OfferModel,
    as_of: datetime,
    features: pd.DataFrame,
    *,
    segments: int,
    seed: int,
    only_listed: bool,
) -> Snapshot:
    """Holdings and history of the customers in `features` at `as_of`."""
    return build_snapshot(
        conn,
        as_of,
        list(model.products.product_ids),
        segments=segments,
        seed=seed,
        features=features,
        only_listed=only_listed,
    )


def score_snapshot(
    model: OfferModel,
    catalogue: Catalogue,
    policy: OfferPolicy,
    snapshot: Snapshot,
    contacts: np.ndarray,
    churn_risk: np.ndarray,
    *,
    k: int,
    channel: str | None = None,
) -> OfferSlate:
    """Propensities from the model, then business arbitration: the offers per customer."""
    features = snapshot.features
    propensity, _ = model.propensity(features, snapshot.history, snapshot.held)
    held = snapshot.held.toarray() > 0
    customers = customers_for(features, held, churn_risk)
    return arbitrate(
        propensity,
        catalogue,
        customers,
        channel=channel,
        contacts_in_window=contacts,
        policy=policy,
        k=k,
    )


def slate_views(slate: OfferSlate, row: int, model_version: str) -> list[OfferView]:
    """Customer `row`'s offers as views, best first."""
    return [
        OfferView(
            product_id=o.product_id,
            name=o.name,
            category=o.category,
            score=round(o.score, 6),
            propensity=round(o.propensity, 6),
            expected_value=round(o.expected_value, 4),
            reasons=list(o.reasons),
            model_version=model_version,
        )
        for o in slate.offers(row)
    ]


def customer_features(conn: Connection, customer_id: str) -> pd.DataFrame:
    """One customer's feature row (empty frame when the features job has not seen them)."""
    return current_features(conn, [customer_id])
