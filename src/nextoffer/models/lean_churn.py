"""The churn model as the API serves it: numpy only, no pandas, scikit-learn or LightGBM.

`LeanChurnModel.load` reads the files `ChurnModel.save` writes (every saved version has
them): the booster's text, walked by `models.trees.Forest` and explained by
`models.tree_shap.TreeExplainer`, the table schema and the Platt calibration. It scores and
explains customers given as plain mappings (a feature row as `store.reads.features.feature_rows`
returns it) with the same probabilities (tested to 1e-9) and reasons as `ChurnModel`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from nextoffer.models.cells import OTHER_LEVEL, boolean_cell, category_code, numeric_cell, plain
from nextoffer.models.platt import PlattCalibration
from nextoffer.models.tree_shap import TreeExplainer
from nextoffer.models.trees import Forest, UnsupportedModelError, node_counts

if TYPE_CHECKING:
    from nextoffer.models.churn import ChurnModel

log = logging.getLogger(__name__)

ServedChurnModel: TypeAlias = "LeanChurnModel | ChurnModel"
"""What serving holds: the lean model, or the full one where the lean cannot read the files."""

FeatureRow = Mapping[str, Any]
"""One customer's features: column name → value (None or NaN when missing)."""

# The files and format of `models.churn` (not imported: it loads LightGBM).
_KIND = "churn-lightgbm"
_FORMAT_VERSION = 1
_SCHEMA_VERSION = 1


@dataclass
class LeanChurnModel:
    """Calibrated churn probabilities and SHAP reasons from feature rows."""

    numeric: tuple[str, ...]
    boolean: tuple[str, ...]
    categorical: dict[str, tuple[str, ...]]
    calibration: PlattCalibration
    forest: Forest
    explainer: TreeExplainer
    info: dict[str, Any] = field(default_factory=dict)
    gains: dict[str, float] = field(default_factory=dict)
    _codes: dict[str, dict[str, int]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._codes = {
            name: {level: i for i, level in enumerate(levels)}
            for name, levels in self.categorical.items()
        }

    @classmethod
    def load(cls, directory: Path) -> LeanChurnModel:
        """Read a model directory written by `ChurnModel.save`."""
        directory = Path(directory)
        meta = json.loads((directory / "meta.json").read_text())
        if meta.get("kind") != _KIND:
            raise ValueError(f"{directory} does not hold a churn model")
        if meta.get("format_version") != _FORMAT_VERSION:
            raise ValueError(f"{directory}: unsupported model format {meta.get('format_version')}")
        schema = json.loads((directory / "schema.json").read_text())
        if schema.get("version") != _SCHEMA_VERSION:
            raise ValueError(f"{directory}: unsupported table schema {schema.get('version')!r}")
        text = (directory / "model.txt").read_text()
        # Saved at the best iteration; `ChurnModel` predicts with that many trees too.
        trees = int(meta["best_iteration"])
        forest = Forest.from_text(text, trees)
        internal, leaves = node_counts(text, trees)
        categorical = {
            str(c["name"]): tuple(str(v) for v in c["levels"]) for c in schema["categorical"]
        }
        model = cls(
            numeric=tuple(str(c) for c in schema["numeric"]),
            boolean=tuple(str(c) for c in schema["boolean"]),
            categorical=categorical,
            calibration=PlattCalibration.from_dict(
                json.loads((directory / "calibration.json").read_text())
            ),
            forest=forest,
            explainer=TreeExplainer.build(forest, internal, leaves),
            info=dict(meta.get("info", {})),
            gains={str(k): float(v) for k, v in meta.get("importance", {}).items()},
        )
        if forest.n_features != len(model.features):
            raise ValueError(f"{directory}: model features do not match schema.json")
        return model

    @property
    def features(self) -> tuple[str, ...]:
        """Model input columns in encoding order (as `TableSchema.features`)."""
        return self.numeric + self.boolean + tuple(self.categorical)

    def encode(self, rows: Sequence[FeatureRow]) -> np.ndarray:
        """The booster's inputs, rows × features, as `tabular.encode_for_trees` makes them."""
        out = np.empty((len(rows), len(self.features)), dtype=np.float64)
        column = 0
        for name in self.numeric:
            out[:, column] = [numeric_cell(row.get(name)) for row in rows]
            column += 1
        for name in self.boolean:
            out[:, column] = [boolean_cell(row.get(name)) for row in rows]
            column += 1
        for name, codes in self._codes.items():
            other = codes.get(OTHER_LEVEL)
            out[:, column] = [category_code(row.get(name), codes, other) for row in rows]
            column += 1
        return out

    def predict_raw(self, rows: Sequence[FeatureRow]) -> np.ndarray:
        """Uncalibrated churn probabilities."""
        return self.forest.predict(self.encode(rows))

    def predict_proba(self, rows: Sequence[FeatureRow]) -> np.ndarray:
        """Calibrated churn probabilities (as `ChurnModel.predict_proba`)."""
        return self.calibration.apply(self.predict_raw(rows))

    def explain(self, rows: Sequence[FeatureRow], top: int = 3) -> list[list[dict[str, Any]]]:
        """Per row, up to `top` features raising churn risk most (as `ChurnModel.explain`)."""
        contrib = self.explainer.contributions(self.encode(rows))
        names = self.features
        explanations: list[list[dict[str, Any]]] = []
        for row, values in zip(rows, contrib, strict=True):
            order = np.argsort(-values, kind="stable")[:top]
            explanations.append(
                [
                    {
                        "feature": names[j],
                        "value": plain(row.get(names[j])),
                        "contribution": float(values[j]),
                    }
                    for j in order
                    if values[j] > 0
                ]
            )
        return explanations

    def importance(self) -> dict[str, float]:
        """Gain importance per feature, as saved with the model."""
        return dict(self.gains)


def load_served(directory: Path) -> ServedChurnModel:
    """The churn model serving answers with: lean, or the full model if the lean cannot read it.

    Every saved version has the files the lean model reads; a booster it cannot walk or
    explain (linear trees, a text without node counts) falls back to `ChurnModel`, logged.
    """
    try:
        return LeanChurnModel.load(directory)
    except UnsupportedModelError as exc:
        log.warning("churn model in %s served by the full stack (LightGBM): %s", directory, exc)
    from nextoffer.models.churn import ChurnModel

    return ChurnModel.load(directory)
