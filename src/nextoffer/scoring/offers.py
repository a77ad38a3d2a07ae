"""Score next-best offers for a block of customers: one function for precompute and live answers.

A block is the customers of one feature frame: a precompute chunk, or the one customer of a
live answer. `score_block` reads what arbitration needs (holdings, contacts, churn risk),
asks the model for propensities, arbitrates, and returns each customer's `Offer`s.

pandas and the model libraries are imported inside the functions that need them. The live
answer with a lean model (`models.lean_offers`) goes through `read_live` and `score_live`,
which need neither: a serving process never imports them.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import scipy.sparse as sp

from nextoffer.config import Settings
from nextoffer.domain.offers import (
    CATEGORIES,
    Catalogue,
    Customers,
    Offer,
    OfferPolicy,
    OfferSlate,
    arbitrate,
)
from nextoffer.scoring.uplift import predict_uplift
from nextoffer.store import Connection
from nextoffer.store.reads import churn as churn_reads
from nextoffer.store.reads import contacts

if TYPE_CHECKING:
    import pandas as pd

    from nextoffer.features.training import Snapshot
    from nextoffer.models.lean_offers import LeanOfferModel, ServedOfferModel
    from nextoffer.models.uplift import UpliftModel
    from nextoffer.scoring.champions import Champion

HELD_COLUMNS: Final[Mapping[str, str]] = {
    "mobile_plan": "mobile_held",
    "broadband_plan": "broadband_held",
    "addon": "addons_held",
    "device": "devices_held",
    "bundle": "bundles_held",
}
"""The feature column counting held products of a category, for the categories that have one.

The other categories (fixed voice, TV, security, other) count only through held products."""

ATTRIBUTE_PREFIX: Final = "attr_"
"""Feature-frame columns of custom customer attributes: `attr_<name>`."""


@dataclass(frozen=True)
class ScoredBlock:
    """A block's customers (in feature-frame order) and each one's offers, best first."""

    customer_ids: np.ndarray
    offers: list[list[Offer]]


def policy_from_settings(settings: Settings) -> OfferPolicy:
    """The business knobs of arbitration as configured."""
    return OfferPolicy(
        value_weight=settings.offer_value_weight,
        contact_cap=settings.contact_cap,
        contact_window_days=settings.contact_window_days,
        high_churn_risk=settings.churn_bands[1],
    )


def customers_for(features: pd.DataFrame, held: np.ndarray, churn_risk: np.ndarray) -> Customers:
    """Arbitration's view of the customers: holdings, held categories, churn risk, attributes.

    Every `attr_<name>` column of the frame becomes attribute `name`, which the product
    rules' `requires_attribute` reads.
    """
    return Customers(
        contract_type=features["contract_type"].to_numpy(dtype=object),
        region=features["region"].to_numpy(dtype=object),
        tenure_months=_numbers(features["tenure_months"]),
        held=held,
        churn_risk=churn_risk,
        held_categories=held_categories(features),
        attributes={
            str(column)[len(ATTRIBUTE_PREFIX) :]: _attribute(features[column])
            for column in features.columns
            if str(column).startswith(ATTRIBUTE_PREFIX)
        },
    )


def held_categories(features: pd.DataFrame) -> np.ndarray:
    """Customers × `CATEGORIES`: the `*_held` feature count of the category is above 0."""
    out = np.zeros((len(features), len(CATEGORIES)), np.bool_)
    for j, category in enumerate(CATEGORIES):
        column = HELD_COLUMNS.get(category)
        if column is not None and column in features.columns:
            out[:, j] = np.nan_to_num(_numbers(features[column])) > 0
    return out


def _numbers(column: pd.Series) -> np.ndarray:
    import pandas as pd

    return pd.to_numeric(column, errors="coerce").to_numpy(np.float64)


def _attribute(column: pd.Series) -> np.ndarray:
    """An attribute column as arbitration reads it: float when numeric, else text or None."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
        return _numbers(column.astype("float64"))
    values: np.ndarray = column.to_numpy(dtype=object, copy=True)
    values[column.isna().to_numpy()] = None
    return values


def contacts_in_window(
    conn: Connection,
    customer_ids: np.ndarray,
    catalogue: Catalogue,
    since: datetime,
    *,
    only_listed: bool,
) -> np.ndarray:
    """Customers × products: how often each offer was shown since `since`."""
    bounds = _id_range(customer_ids) if only_listed else None
    shown = contacts.shown_counts(conn, since, bounds)
    position = {str(c): i for i, c in enumerate(customer_ids)}
    ci, pi, counts = [], [], []
    for customer_id, products in shown.items():
        row = position.get(customer_id)
        if row is None:
            continue
        for product_id, count in products.items():
            if product_id not in catalogue.product_ids:
                continue
            ci.append(row)
            pi.append(catalogue.index(product_id))
            counts.append(count)
    matrix = np.zeros((len(customer_ids), catalogue.n_products), dtype=np.int32)
    if ci:
        np.add.at(matrix, (np.array(ci), np.array(pi)), np.array(counts, dtype=np.int32))
    return matrix


def latest_churn_risk(
    conn: Connection, customer_ids: np.ndarray, *, only_listed: bool
) -> np.ndarray:
    """Each customer's most recent churn score (NaN when never scored)."""
    bounds = _id_range(customer_ids) if only_listed else None
    scores = churn_reads.latest_scores(conn, bounds)
    return np.array([scores.get(str(c), np.nan) for c in customer_ids], dtype=np.float64)


def load_block(
    conn: Connection,
    model: ServedOfferModel,
    as_of: datetime,
    features: pd.DataFrame,
    *,
    segments: int,
    seed: int,
    only_listed: bool,
) -> Snapshot:
    """Holdings and history of the customers in `features` at `as_of`."""
    from nextoffer.features.training import build_snapshot

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
    model: ServedOfferModel,
    catalogue: Catalogue,
    policy: OfferPolicy,
    snapshot: Snapshot,
    contacts: np.ndarray,
    churn_risk: np.ndarray,
    *,
    k: int,
    channel: str | None = None,
    uplift: UpliftModel | None = None,
) -> OfferSlate:
    """Propensities from the model, then business arbitration: the offers per customer.

    With an `uplift` model (offers ranked by uplift, `scoring.uplift.ranking_model`),
    retention offers are ranked by its predicted uplift × value and go to persuadables only.
    """
    from nextoffer.models.lean_offers import LeanOfferModel

    features = snapshot.features
    if isinstance(model, LeanOfferModel):
        rows = [{str(k): v for k, v in r.items()} for r in features.to_dict("records")]
        propensity = model.propensity(rows, snapshot.history, snapshot.held)
    else:
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
        uplift=None if uplift is None else predict_uplift(uplift, features),
    )


@dataclass(frozen=True)
class BlockInputs:
    """What scoring a block reads from the database, read while a connection is held."""

    snapshot: Snapshot
    contacts: np.ndarray
    churn_risk: np.ndarray

    @property
    def customer_ids(self) -> np.ndarray:
        """The block's customers, in feature-frame order."""
        return self.snapshot.customer_ids


def read_block(
    conn: Connection,
    model: ServedOfferModel,
    catalogue: Catalogue,
    policy: OfferPolicy,
    features: pd.DataFrame,
    as_of: datetime,
    *,
    segments: int,
    seed: int,
) -> BlockInputs:
    """What scoring the customers in `features` at `as_of` needs from the database.

    Holdings, history, contacts within the policy's window and the latest churn risk, read
    for the customers' own id range only.
    """
    snapshot = load_block(
        conn, model, as_of, features, segments=segments, seed=seed, only_listed=True
    )
    ids = snapshot.customer_ids
    return BlockInputs(
        snapshot,
        contacts_in_window(conn, ids, catalogue, policy.window_start(as_of), only_listed=True),
        latest_churn_risk(conn, ids, only_listed=True),
    )


def score_block(
    champion: Champion[ServedOfferModel],
    catalogue: Catalogue,
    policy: OfferPolicy,
    inputs: BlockInputs,
    *,
    k: int,
    uplift: Champion[UpliftModel] | None = None,
) -> ScoredBlock:
    """Every customer's offers, best first, labelled with the champion's version.

    `uplift` is the uplift champion when offers are ranked by uplift (`ranking_model`),
    else None. No database access: callers read the inputs first and let the connection go.
    """
    slate = score_snapshot(
        champion.model,
        catalogue,
        policy,
        inputs.snapshot,
        inputs.contacts,
        inputs.churn_risk,
        k=k,
        uplift=None if uplift is None else uplift.model,
    )
    ids = inputs.customer_ids
    return ScoredBlock(ids, [slate.offers(i, champion.label) for i in range(len(ids))])


def customer_features(conn: Connection, customer_id: str) -> pd.DataFrame:
    """One customer's feature row (empty frame when the features job has not seen them)."""
    from nextoffer.features.training import current_features

    return current_features(conn, [customer_id])


def _id_range(customer_ids: np.ndarray) -> tuple[str, str] | None:
    """(smallest, largest) customer id of a block, for range filters; None when empty."""
    ids = [str(c) for c in customer_ids]
    return (min(ids), max(ids)) if ids else None


# -- the live answer without pandas -------------------------------------------------------


@dataclass(frozen=True)
class LiveInputs:
    """`BlockInputs` for a lean model: feature rows as dicts, sorted by customer id."""

    rows: list[dict[str, Any]]
    held: sp.csr_matrix
    history: sp.csr_matrix
    contacts: np.ndarray
    churn_risk: np.ndarray

    @property
    def customer_ids(self) -> np.ndarray:
        """The block's customers, in row order."""
        return np.array([str(r["customer_id"]) for r in self.rows], dtype=object)


def read_live(
    conn: Connection,
    model: LeanOfferModel,
    catalogue: Catalogue,
    policy: OfferPolicy,
    rows: Sequence[Mapping[str, Any]],
    as_of: datetime,
) -> LiveInputs:
    """`read_block` for a few customers' feature rows: the same reads, no pandas."""
    from nextoffer.features.holdings import holdings

    ordered = sorted((dict(r) for r in rows), key=lambda r: str(r["customer_id"]))
    ids = np.array([str(r["customer_id"]) for r in ordered], dtype=object)
    held, history = holdings(conn, as_of, list(ids), model.products.product_ids)
    return LiveInputs(
        ordered,
        held,
        history,
        contacts_in_window(conn, ids, catalogue, policy.window_start(as_of), only_listed=True),
        latest_churn_risk(conn, ids, only_listed=True),
    )


def score_live(
    champion: Champion[LeanOfferModel],
    catalogue: Catalogue,
    policy: OfferPolicy,
    inputs: LiveInputs,
    *,
    k: int,
) -> ScoredBlock:
    """`score_block` with the lean model: the same offers (propensity ranking only)."""
    propensity = champion.model.propensity(inputs.rows, inputs.history, inputs.held)
    held = inputs.held.toarray() > 0
    slate = arbitrate(
        propensity,
        catalogue,
        customers_from_rows(inputs.rows, held, inputs.churn_risk),
        channel=None,
        contacts_in_window=inputs.contacts,
        policy=policy,
        k=k,
    )
    ids = inputs.customer_ids
    return ScoredBlock(ids, [slate.offers(i, champion.label) for i in range(len(ids))])


def customers_from_rows(
    rows: Sequence[Mapping[str, Any]], held: np.ndarray, churn_risk: np.ndarray
) -> Customers:
    """`customers_for` from feature rows as dicts: the same arrays, no pandas."""

    def column(name: str) -> list[Any]:
        return [r.get(name) for r in rows]

    categories = np.zeros((len(rows), len(CATEGORIES)), np.bool_)
    for j, category in enumerate(CATEGORIES):
        name = HELD_COLUMNS.get(category)
        if name is not None and rows and name in rows[0]:
            categories[:, j] = np.nan_to_num(_plain_numbers(column(name))) > 0
    attributes = sorted({str(k) for r in rows for k in r if str(k).startswith(ATTRIBUTE_PREFIX)})
    return Customers(
        contract_type=np.array(column("contract_type"), dtype=object),
        region=np.array(column("region"), dtype=object),
        tenure_months=_plain_numbers(column("tenure_months")),
        held=held,
        churn_risk=churn_risk,
        held_categories=categories,
        attributes={
            name[len(ATTRIBUTE_PREFIX) :]: _plain_attribute(column(name)) for name in attributes
        },
    )


def _plain_numbers(values: Sequence[Any]) -> np.ndarray:
    """Values as `pd.to_numeric(errors="coerce")` reads them, float64."""
    out = np.full(len(values), np.nan)
    for i, value in enumerate(values):
        if isinstance(value, bool | int | float):
            out[i] = float(value)
        elif value is not None:
            with contextlib.suppress(ValueError):
                out[i] = float(str(value))
    return out


def _plain_attribute(values: Sequence[Any]) -> np.ndarray:
    """An attribute as `_attribute` reads its column: float when all numbers, else objects."""
    if all(isinstance(v, bool | int | float) for v in values):
        return np.array([float(v) for v in values], dtype=np.float64)
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        out[i] = None if missing else value
    return out
