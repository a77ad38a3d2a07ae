"""The offers model as the API serves it: numpy and scipy only, no pandas, LightGBM or implicit.

`LeanOfferModel.load` reads the files `OfferModel.save` writes (every saved version has
them): the recommenders' arrays, the products, levels and inputs from `offer_model.json`
and the boosters' text, walked by `models.trees.Forest`. It scores customers given their
feature rows as plain mappings (a database row, the cached JSON), with the same
propensities as `OfferModel.propensity` on the same customers (tested to 1e-9).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import scipy.sparse as sp

from nextoffer.models.als import ALSRecommender
from nextoffer.models.base import Recommender
from nextoffer.models.candidates import (
    ProductTable,
    RankerInputs,
    candidate_mask,
    candidate_rows,
    shortlist,
)
from nextoffer.models.catalog import load_recommender
from nextoffer.models.trees import Forest, UnsupportedModelError

if TYPE_CHECKING:
    from nextoffer.models.offer_model import OfferModel

log = logging.getLogger(__name__)

ServedOfferModel: TypeAlias = "LeanOfferModel | OfferModel"
"""What serving holds: the lean model, or the full one where the lean cannot read the files."""

FeatureRow = Mapping[str, Any]
"""One customer's features: column name → value (None or NaN when missing)."""

# The offer model formats whose files this loader reads (`models.offer_model`).
_READABLE_FORMATS = (1, 2)


@dataclass
class LeanOfferModel:
    """Propensities customers × products from feature rows, held and history matrices."""

    products: ProductTable
    recommenders: dict[str, Recommender]
    levels: dict[str, list[str]]
    inputs: RankerInputs
    shortlist_per_model: int
    ranker: Forest
    product_rankers: dict[int, Forest] = field(default_factory=dict)
    gains: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    # Prepared once: level → code per categorical input.
    _codes: dict[str, dict[str, float]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._codes = {
            column: {level: float(i) for i, level in enumerate(self.levels[column])}
            for column in self.inputs.categorical
        }
        for model in self.recommenders.values():
            if isinstance(model, ALSRecommender):
                model.portable = True

    @classmethod
    def load(cls, directory: Path) -> LeanOfferModel:
        """Read a model directory written by `OfferModel.save`."""
        meta = json.loads((directory / "offer_model.json").read_text())
        if meta["format_version"] not in _READABLE_FORMATS:
            raise ValueError(f"{directory}: unsupported offer model format")
        return cls(
            products=ProductTable.from_dict(meta["products"]),
            recommenders={
                name: load_recommender(directory / "recommenders" / name)
                for name in meta["recommenders"]
            },
            levels=meta["levels"],
            inputs=RankerInputs.from_dict(meta["inputs"]) if "inputs" in meta else RankerInputs(),
            shortlist_per_model=int(meta.get("shortlist_per_model", 0)),
            # Saved at the best iteration: every tree in the file counts.
            ranker=Forest.load(directory / "ranker.txt"),
            product_rankers={
                int(j): Forest.load(directory / f"ranker-product-{j}.txt")
                for j in meta.get("product_boosters", [])
            },
            gains=dict(meta.get("importance", {})),
            meta=dict(meta.get("meta", {})),
        )

    def importance(self) -> dict[str, float]:
        """Gain importance of every ranker input, as saved with the model."""
        return dict(self.gains)

    def propensity(
        self, rows: Sequence[FeatureRow], history: sp.csr_matrix, held: sp.csr_matrix
    ) -> np.ndarray:
        """Propensity customers × products, float32, NaN where not a candidate.

        The same numbers as `OfferModel.propensity` (which casts to float32 too).
        """
        exact = self.propensity64(rows, history, held)
        return exact.astype(np.float32)

    def propensity64(
        self, rows: Sequence[FeatureRow], history: sp.csr_matrix, held: sp.csr_matrix
    ) -> np.ndarray:
        """`propensity` before the float32 cast: the boosters' float64 predictions."""
        inputs, cells, cols = self.ranker_rows(rows, history, held)
        out = np.full((len(rows), len(self.products)), np.nan, dtype=np.float64)
        if len(cells):
            out[cells, cols] = self.predict_rows(inputs, cols)
        return out

    def ranker_rows(
        self, rows: Sequence[FeatureRow], history: sp.csr_matrix, held: sp.csr_matrix
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(inputs, customer row, product) of every candidate, as `OfferModel.ranker_rows`."""
        groups = np.array([_group(row.get("segment_id")) for row in rows], dtype=np.int64)
        scores = {
            name: np.asarray(model.score_block(history, groups), dtype=np.float32)
            for name, model in self.recommenders.items()
        }
        mask = shortlist(candidate_mask(held, self.products), scores, self.shortlist_per_model)
        customer = [
            np.array([_number(row.get(c)) for row in rows], dtype=np.float64).astype(np.float32)
            for c in self.inputs.numeric
        ]
        customer += [
            np.array([self._code(c, row.get(c)) for row in rows], dtype=np.float32)
            for c in self.inputs.categorical
        ]
        # Dense: column picks from a sparse matrix cost more than the few rows scored here.
        flags = held.toarray() if self.inputs.held else None
        return candidate_rows(
            customer, self.products, mask, scores, self.levels, self.inputs, flags
        )

    def predict_rows(self, inputs: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """The ranker's float64 propensity of candidate rows (products `cols`)."""
        out = self.ranker.predict(inputs)
        for j, forest in self.product_rankers.items():
            chosen = cols == j
            if chosen.any():
                out[chosen] = forest.predict(inputs[chosen])
        return out

    def _code(self, column: str, value: Any) -> float:
        """A categorical value's code, NaN when missing or not a training level."""
        text = _level_text(value)
        return np.nan if text is None else self._codes[column].get(text, np.nan)


def load_served(directory: Path) -> ServedOfferModel:
    """The model serving answers with: lean, or the full model (and its libraries) if need be.

    Every saved version has the files the lean model reads; a booster it cannot walk
    (linear trees, a multi-class objective) falls back to `OfferModel`, logged.
    """
    try:
        return LeanOfferModel.load(directory)
    except UnsupportedModelError as exc:
        log.warning("offers model in %s served by the full stack (LightGBM): %s", directory, exc)
    from nextoffer.models.offer_model import OfferModel

    return OfferModel.load(directory)


def _number(value: Any) -> float:
    """A value as `pd.to_numeric(errors="coerce")` reads it: NaN when not a number."""
    if value is None:
        return math.nan
    if isinstance(value, bool | int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return math.nan


def _group(value: Any) -> int:
    """A segment id as the recommenders' user group, -1 when unknown."""
    number = _number(value)
    return -1 if math.isnan(number) else int(number)


def _level_text(value: Any) -> str | None:
    """A categorical value as its level: integral numbers without a decimal point."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() else str(value)
    if isinstance(value, bool):
        return str(int(value))
    return str(value)
