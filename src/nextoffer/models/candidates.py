"""Customer × product candidate rows: the inputs of the next-best-offer ranker.

pandas is imported by the functions that read a feature frame: the lean serving model
(`models.lean_offers`) uses the rest without it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from nextoffer.features.columns import CATEGORICAL_FEATURES, NUMERIC_FEATURES

if TYPE_CHECKING:
    import pandas as pd

CUSTOMER_NUMERIC = NUMERIC_FEATURES
# The segment is a clustering of the features; as a category it lets trees split by segment.
CUSTOMER_CATEGORICAL = (*CATEGORICAL_FEATURES, "segment_id")
PRODUCT_NUMERIC = ("price", "margin", "min_tenure_months")
PRODUCT_CATEGORICAL = ("product", "category")
# The held-products flags the ranker sees directly: the most-held products, up to this many
# (a telco catalogue rarely has more products that matter; more would only widen the matrix).
MAX_HELD_FLAGS = 64
# A category level needs this many customers in training to be an input of its own.
MIN_LEVEL_COUNT = 10
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_]")


@dataclass(frozen=True)
class RankerInputs:
    """Which customer columns and held-product flags feed the ranker, fixed at training time.

    `numeric` and `categorical` are columns of the features frame (standard features and the
    `attr_*` custom attributes); `held` are catalogue positions whose "holds it now" flag is
    an input, so the ranker sees the customer's products directly, not only through the
    recommenders' scores.
    """

    numeric: tuple[str, ...] = CUSTOMER_NUMERIC
    categorical: tuple[str, ...] = CUSTOMER_CATEGORICAL
    held: tuple[int, ...] = ()

    def names(self, recommenders: Sequence[str], products: ProductTable) -> list[str]:
        """Column order of the ranker's input matrix."""
        return [
            *self.numeric,
            *self.categorical,
            *(held_flag_name(products.product_ids[j]) for j in self.held),
            *PRODUCT_CATEGORICAL,
            *PRODUCT_NUMERIC,
            *(f"score_{name}" for name in recommenders),
            *(f"rank_{name}" for name in recommenders),
        ]

    def categorical_names(self) -> list[str]:
        """The names of the categorical inputs, for LightGBM."""
        return [*self.categorical, *PRODUCT_CATEGORICAL]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, saved with the model."""
        return {
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "held": list(self.held),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RankerInputs:
        """Inverse of `to_dict`."""
        return cls(
            numeric=tuple(data["numeric"]),
            categorical=tuple(data["categorical"]),
            held=tuple(int(j) for j in data["held"]),
        )


def held_flag_name(product_id: str) -> str:
    """`held_<product>` with characters LightGBM refuses in names replaced."""
    return "held_" + _UNSAFE_NAME.sub("_", str(product_id))


def choose_inputs(
    features: pd.DataFrame,
    held: sp.csr_matrix,
    *,
    numeric_attributes: Sequence[str] = (),
    categorical_attributes: Sequence[str] = (),
    max_held: int = MAX_HELD_FLAGS,
) -> RankerInputs:
    """The inputs worth giving the ranker for this training data.

    Standard columns that are empty or constant in the data (an operator export without
    usage or transactions) are left out; the given `attr_*` columns are added as their
    kind says (numbers, flags and dates numeric; categories categorical); the `max_held`
    most-held products get a held flag.
    """

    def informative(column: str) -> bool:
        return column in features.columns and features[column].nunique(dropna=True) > 1

    numeric = [c for c in (*CUSTOMER_NUMERIC, *numeric_attributes) if informative(c)]
    categorical = [c for c in (*CUSTOMER_CATEGORICAL, *categorical_attributes) if informative(c)]
    counts = np.asarray((held > 0).sum(axis=0)).ravel()
    ranked = [int(j) for j in np.argsort(-counts, kind="stable") if counts[j] > 0][:max_held]
    return RankerInputs(tuple(numeric), tuple(categorical), tuple(sorted(ranked)))


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


def fit_levels(
    features: pd.DataFrame, products: ProductTable, inputs: RankerInputs | None = None
) -> dict[str, list[str]]:
    """The category levels of every categorical input, fixed at training time.

    Codes must mean the same at scoring time, so levels are saved with the model and values
    unseen in training become missing.
    """
    categorical = (inputs or RankerInputs()).categorical
    levels = {}
    for column in categorical:
        counts = _as_strings(features[column]).dropna().value_counts()
        # Rare levels would let the trees memorise a handful of customers; they code as
        # missing, like values unseen in training.
        levels[column] = sorted(str(v) for v, n in counts.items() if n >= MIN_LEVEL_COUNT)
    levels["product"] = list(products.product_ids)
    levels["category"] = sorted(set(products.categories))
    return levels


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
    inputs: RankerInputs | None = None,
    held: sp.csr_matrix | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ranker's float32 input matrix for every True cell of `mask`.

    Returns (inputs, row index into `features`, product index). Categorical inputs are
    integer codes (NaN when unseen in training); LightGBM is told which columns they are.
    Each recommender contributes its score and the product's rank among the customer's
    candidates (1 = best), so the ranker sees both strength and order.
    """
    import pandas as pd

    inputs = inputs or RankerInputs()
    customer = [
        *(
            pd.to_numeric(features[column], errors="coerce").to_numpy(dtype=np.float32)
            for column in inputs.numeric
        ),
        *(_codes(features[column], levels[column]) for column in inputs.categorical),
    ]
    return candidate_rows(customer, products, mask, recommender_scores, levels, inputs, held)


def candidate_rows(
    customer: Sequence[np.ndarray],
    products: ProductTable,
    mask: np.ndarray,
    recommender_scores: Mapping[str, np.ndarray],
    levels: Mapping[str, Sequence[str]],
    inputs: RankerInputs,
    held: sp.csr_matrix | np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`candidate_matrix` from the customer input columns already as float32 per customer.

    `customer` holds the numeric values and then the categorical codes, one array per
    input column of `inputs`, in that order; no pandas is needed from here on.
    """
    rows, cols = np.nonzero(mask)
    columns: list[np.ndarray] = [values[rows] for values in customer]
    if inputs.held:
        if held is None:
            raise ValueError("this ranker needs the held products")
        picked = list(inputs.held)
        if isinstance(held, np.ndarray):
            dense = held[:, picked].astype(np.float32)
        else:
            dense = np.asarray(held[:, picked].toarray(), dtype=np.float32)
        for position in range(len(inputs.held)):
            columns.append((dense[:, position] > 0).astype(np.float32)[rows])
    columns.append(cols.astype(np.float32))
    columns.append(category_codes(products, levels)[cols])
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
    matrix = np.column_stack(columns) if columns else np.empty((len(rows), 0), np.float32)
    return matrix.astype(np.float32, copy=False), rows, cols


def category_codes(products: ProductTable, levels: Mapping[str, Sequence[str]]) -> np.ndarray:
    """Each product's category as the ranker's code (float32, NaN when not a level)."""
    index = {level: float(i) for i, level in enumerate(levels["category"])}
    return np.array([index.get(str(c), np.nan) for c in products.categories], dtype=np.float32)


def _as_strings(values: pd.Series) -> pd.Series:
    """Values as strings; integral numbers without a decimal point (segment 3 is "3")."""
    import pandas as pd

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
    import pandas as pd

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
