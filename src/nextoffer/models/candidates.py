"""Customer × product candidate rows: the inputs of the next-best-offer ranker."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from nextoffer.features.builder import CATEGORICAL_FEATURES, NUMERIC_FEATURES

CUSTOMER_NUMERIC = NUMERIC_FEATURES
# The segment is a clustering of the features; as a category it lets trees split by segment.
CUSTOMER_CATEGORICAL = (*CATEGORICAL_FEATURES, "segment_id")
PRODUCT_NUMERIC = ("price", "margin", "min_tenure_months")
PRODUCT_CATEGORICAL = ("product", "category")


@dataclass(frozen=True)
class ProductTable:
    """The catalogue columns the ranker uses, in the model's product order."""

    product_ids: tuple[str, ...]
    categories: tuple[str, ...]
    price: np.ndarray
    margin: np.ndarray
    min_tenure_months: np.ndarray
    active: np.ndarray

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]]) -> ProductTable:
        """Build from product records (the products table's columns)."""
        return cls(
            product_ids=tuple(str(r["product_id"]) for r in records),
            categories=tuple(str(r["category"]) for r in records),
            price=np.array([float(r["price"]) for r in records]),
            margin=np.array([float(r["margin"]) for r in records]),
            min_tenure_months=np.array([float(r["min_tenure_months"] or 0) for r in records]),
            active=np.array([bool(r["active"]) for r in records]),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, saved with the model."""
        return {
            "product_ids": list(self.product_ids),
            "categories": list(self.categories),
            "price": self.price.tolist(),
            "margin": self.margin.tolist(),
            "min_tenure_months": self.min_tenure_months.tolist(),
            "active": self.active.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProductTable:
        """Inverse of `to_dict`."""
        return cls(
            product_ids=tuple(data["product_ids"]),
            categories=tuple(data["categories"]),
            price=np.asarray(data["price"], dtype=float),
            margin=np.asarray(data["margin"], dtype=float),
            min_tenure_months=np.asarray(data["min_tenure_months"], dtype=float),
            active=np.asarray(data["active"], dtype=bool),
        )

    def __len__(self) -> int:
        return len(self.product_ids)


def fit_levels(features: pd.DataFrame, products: ProductTable) -> dict[str, list[str]]:
    """The category levels of every categorical input, fixed at training time.

    Codes must mean the same at scoring time, so levels are saved with the model and values
    unseen in training become missing.
    """
    levels = {
        column: sorted(set(_as_strings(features[column]).dropna().unique()))
        for column in CUSTOMER_CATEGORICAL
    }
    levels["product"] = list(products.product_ids)
    levels["category"] = sorted(set(products.categories))
    return levels


def feature_names(recommenders: Sequence[str]) -> list[str]:
    """Column order of the ranker's input matrix."""
    return [
        *CUSTOMER_NUMERIC,
        *CUSTOMER_CATEGORICAL,
        *PRODUCT_CATEGORICAL,
        *PRODUCT_NUMERIC,
        *(f"score_{name}" for name in recommenders),
        *(f"rank_{name}" for name in recommenders),
    ]


def candidate_mask(held: sp.csr_matrix, products: ProductTable) -> np.ndarray:
    """Customers × products: products that could be offered (active and not held)."""
    mask = np.broadcast_to(products.active, held.shape).copy()
    rows, cols = held.nonzero()
    mask[rows, cols] = False
    return mask


def shortlist(
    mask: np.ndarray, recommender_scores: Mapping[str, np.ndarray], per_model: int
) -> np.ndarray:
    """Keep the candidates that at least one recommender puts in its top `per_model`.

    The ranker then scores a shortlist instead of the whole catalogue: the cost of batch
    scoring falls with it, and a product no recommender rates highly is rarely the best.
    Each recommender's own top `per_model` survives, so it ranks exactly as before.
    """
    if per_model <= 0 or per_model >= mask.shape[1] or not recommender_scores:
        return mask
    keep = np.zeros_like(mask)
    for scores in recommender_scores.values():
        masked = np.where(mask, scores, -np.inf)
        top = np.argpartition(-masked, per_model - 1, axis=1)[:, :per_model]
        np.put_along_axis(keep, top, True, axis=1)
    kept: np.ndarray = mask & keep
    return kept


def candidate_matrix(
    features: pd.DataFrame,
    products: ProductTable,
    mask: np.ndarray,
    recommender_scores: Mapping[str, np.ndarray],
    levels: Mapping[str, Sequence[str]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ranker's float32 input matrix for every True cell of `mask`.

    Returns (inputs, row index into `features`, product index). Categorical inputs are
    integer codes (NaN when unseen in training); LightGBM is told which columns they are.
    Each recommender contributes its score and the product's rank among the customer's
    candidates (1 = best), so the ranker sees both strength and order.
    """
    rows, cols = np.nonzero(mask)
    columns: list[np.ndarray] = []
    for column in CUSTOMER_NUMERIC:
        values = pd.to_numeric(features[column], errors="coerce").to_numpy(dtype=np.float32)
        columns.append(values[rows])
    for column in CUSTOMER_CATEGORICAL:
        columns.append(_codes(features[column], levels[column])[rows])
    columns.append(cols.astype(np.float32))
    category_codes = _codes(pd.Series(products.categories), levels["category"])
    columns.append(category_codes[cols])
    for values in (products.price, products.margin, products.min_tenure_months):
        columns.append(values.astype(np.float32)[cols])
    ranks = {}
    for name, scores in recommender_scores.items():
        masked = np.where(mask, scores, -np.inf)
        columns.append(np.asarray(scores, dtype=np.float32)[rows, cols])
        order = np.argsort(-masked, axis=1, kind="stable")
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(1, mask.shape[1] + 1)[None, :], axis=1)
        ranks[name] = rank
    for name in recommender_scores:
        columns.append(ranks[name][rows, cols].astype(np.float32))
    inputs = np.column_stack(columns) if columns else np.empty((len(rows), 0), np.float32)
    return inputs.astype(np.float32, copy=False), rows, cols


def categorical_columns(recommenders: Sequence[str]) -> list[str]:
    """The names of the categorical inputs, for LightGBM."""
    del recommenders  # the categorical set does not depend on the recommenders
    return [*CUSTOMER_CATEGORICAL, *PRODUCT_CATEGORICAL]


def _as_strings(values: pd.Series) -> pd.Series:
    """Values as strings; integral numbers without a decimal point (segment 3 is "3")."""
    if pd.api.types.is_numeric_dtype(values):
        try:
            return values.astype("Int64").astype("string")
        except (TypeError, ValueError):
            pass
    return values.astype("string")


# Up to this many rows (the live API's one customer) text columns are coded by a dict
# lookup: building a pandas Categorical costs about 1 ms a column whatever the size.
_SMALL_FRAME = 64


def _codes(values: pd.Series, levels: Sequence[str]) -> np.ndarray:
    if len(values) <= _SMALL_FRAME and not pd.api.types.is_numeric_dtype(values):
        # Same mapping as the pandas path below: a non-numeric column's cells become str(v).
        index = {level: float(i) for i, level in enumerate(levels)}
        return np.array(
            [
                np.nan if v is None or v is pd.NA or v != v else index.get(str(v), np.nan)
                for v in values
            ],
            dtype=np.float32,
        )
    strings = _as_strings(values)
    codes = pd.Index(list(levels)).get_indexer(pd.Index(strings)).astype(np.float32)
    codes[codes < 0] = np.nan
    return codes
