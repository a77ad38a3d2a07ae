"""LightGBM boosters predicted with numpy alone: the saved model text, walked row-vectorised.

The serving process must not import LightGBM (it pulls scikit-learn and pandas in). A
booster's text file holds every tree as arrays; `Forest` flattens them and walks all rows
through all trees at once, applying LightGBM's own decision rules (`Tree::NumericalDecision`
and `CategoricalDecision`), sums the leaves in tree order in float64 and applies the
objective's transform, so predictions equal `Booster.predict` to the last bit or nearly
(the sigmoid's `exp` may differ by one ulp).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# LightGBM treats |x| <= this as zero (kZeroThreshold), both in inputs and zero-as-missing.
_ZERO = 1e-35
_CATEGORICAL_BIT = 1
_DEFAULT_LEFT_BIT = 2
_MISSING_ZERO, _MISSING_NAN = 1, 2
# Objectives whose output is the raw score, and those whose output is a sigmoid of it.
_IDENTITY = ("regression", "regression_l2", "regression_l1", "huber", "fair", "quantile")
_SIGMOID = ("binary", "cross_entropy", "xentropy")


class UnsupportedModelError(ValueError):
    """The booster uses a feature this predictor does not implement (e.g. linear trees)."""


@dataclass(frozen=True)
class Forest:
    """Every tree of a booster as flat arrays; nodes of all trees share one numbering.

    A child code >= 0 is an internal node, a negative code c is leaf ~c (LightGBM's own
    convention, offset per tree). `roots` holds each tree's first node (or leaf code).
    """

    roots: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    categorical: np.ndarray
    default_left: np.ndarray
    missing: np.ndarray
    left: np.ndarray
    right: np.ndarray
    leaf_value: np.ndarray
    # Categorical node i goes left for category c when cat_table[cat_row[i], c] (the
    # bitsets expanded once; codes past the table's width are in no bitset).
    cat_row: np.ndarray
    cat_table: np.ndarray
    n_features: int
    sigmoid: float | None
    # Any node with zero as missing (`zero_as_missing`): zeros then need the full rule.
    zero_missing: bool

    @classmethod
    def from_text(cls, text: str, num_iteration: int | None = None) -> Forest:
        """Parse a LightGBM model text (`Booster.model_to_string`, a saved `.txt`)."""
        header, trees = _sections(text)
        if int(header.get("num_tree_per_iteration", "1")) != 1:
            raise UnsupportedModelError("multi-class boosters are not supported")
        if "average_output" in header:
            raise UnsupportedModelError("random-forest boosters are not supported")
        if num_iteration is not None and num_iteration > 0:
            trees = trees[:num_iteration]
        return _flatten(trees, int(header["max_feature_idx"]) + 1, _sigmoid(header))

    @classmethod
    def load(cls, path: Path) -> Forest:
        """A saved booster file, every tree in it."""
        return cls.from_text(path.read_text())

    @property
    def n_trees(self) -> int:
        """How many trees are summed."""
        return int(self.roots.size)

    def raw(self, inputs: np.ndarray) -> np.ndarray:
        """Sum of the trees' leaves per row (float64), before the objective's transform."""
        x = np.asarray(inputs, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] < self.n_features:
            raise ValueError(f"inputs have shape {x.shape}, the model needs {self.n_features}")
        # LightGBM drops near-zero inputs from the row it predicts: they read as 0.
        x = np.where(np.abs(x) <= _ZERO, 0.0, x)
        n, t = x.shape[0], self.n_trees
        if n == 0 or t == 0:
            return np.zeros(n, dtype=np.float64)
        node = np.tile(self.roots, n)
        row = np.repeat(np.arange(n), t)
        active = np.flatnonzero(node >= 0)
        while active.size:
            at = node[active]
            values = x[row[active], self.feature[at]]
            nxt = np.where(self._goes_left(at, values), self.left[at], self.right[at])
            node[active] = nxt
            active = active[nxt >= 0]
        leaves = self.leaf_value[~node].reshape(n, t)
        # Tree by tree, as LightGBM adds them (cumsum is sequential; sum is pairwise).
        total: np.ndarray = np.cumsum(leaves, axis=1)[:, -1]
        return total

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """What `Booster.predict` returns: the transformed score per row (float64)."""
        raw = self.raw(inputs)
        if self.sigmoid is None:
            return raw
        out: np.ndarray = 1.0 / (1.0 + np.exp(-self.sigmoid * raw))
        return out

    def _goes_left(self, at: np.ndarray, values: np.ndarray) -> np.ndarray:
        nan = np.isnan(values)
        with np.errstate(invalid="ignore"):
            left: np.ndarray = values <= self.threshold[at]
        # Most rows are plain numbers at nodes without zero-as-missing: `<=` decides them.
        # The rest take LightGBM's full rule (missing kinds, default direction).
        unusual = nan | (self.missing[at] == _MISSING_ZERO) if self.zero_missing else nan
        if unusual.any():
            pick = np.flatnonzero(unusual)
            left[pick] = self._missing_rule(at[pick], values[pick], nan[pick])
        categorical = self.categorical[at]
        if categorical.any():
            # Categorical NaN always goes right (before the numerical NaN-as-zero).
            left[categorical] = self._in_bitset(at[categorical], values[categorical])
        return left

    def _missing_rule(self, at: np.ndarray, values: np.ndarray, nan: np.ndarray) -> np.ndarray:
        """`Tree::NumericalDecision`: NaN is 0 unless NaN is the node's missing kind."""
        missing = self.missing[at]
        values = np.where(nan & (missing != _MISSING_NAN), 0.0, values)
        is_missing = ((missing == _MISSING_ZERO) & (np.abs(values) <= _ZERO)) | (
            (missing == _MISSING_NAN) & nan
        )
        with np.errstate(invalid="ignore"):
            left: np.ndarray = np.where(
                is_missing, self.default_left[at], values <= self.threshold[at]
            )
        return left

    def _in_bitset(self, at: np.ndarray, values: np.ndarray) -> np.ndarray:
        """LightGBM's categorical rule: NaN and negative go right, else bitset membership."""
        table = self.cat_table
        # static_cast<int>: truncation towards zero, so -0.5 is category 0.
        code = np.trunc(np.where(np.isnan(values), -1.0, values))
        valid = (code >= 0) & (code < table.shape[1])
        member: np.ndarray = (
            valid & table[self.cat_row[at], np.where(valid, code, 0).astype(np.int64)]
        )
        return member


def _sections(text: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The header's key=value pairs and one such dict per tree, up to `end of trees`."""
    header: dict[str, str] = {}
    trees: list[dict[str, str]] = []
    current = header
    for line in text.splitlines():
        if line.startswith("end of trees"):
            break
        if line.startswith("Tree="):
            current = {}
            trees.append(current)
            continue
        key, sep, value = line.partition("=")
        if sep:
            current[key] = value
    return header, trees


def _sigmoid(header: dict[str, str]) -> float | None:
    """The sigmoid scale of the objective, None for an identity output."""
    parts = header.get("objective", "regression").split()
    name = parts[0]
    if name in _IDENTITY:
        return None
    if name in _SIGMOID:
        for part in parts[1:]:
            key, _, value = part.partition(":")
            if key == "sigmoid":
                return float(value)
        return 1.0
    raise UnsupportedModelError(f"objective {name!r} is not supported")


def _numbers(tree: dict[str, str], key: str, dtype: type) -> np.ndarray:
    value = tree.get(key, "")
    return np.array(value.split(), dtype=dtype) if value else np.zeros(0, dtype=dtype)


def _flatten(trees: list[dict[str, str]], n_features: int, sigmoid: float | None) -> Forest:
    roots: list[int] = []
    feature: list[np.ndarray] = []
    threshold: list[np.ndarray] = []
    decision: list[np.ndarray] = []
    left: list[np.ndarray] = []
    right: list[np.ndarray] = []
    leaves: list[np.ndarray] = []
    cat_start: list[np.ndarray] = []
    cat_len: list[np.ndarray] = []
    words: list[np.ndarray] = []
    nodes = leaf_count = word_count = 0
    for tree in trees:
        if tree.get("is_linear", "0") != "0":
            raise UnsupportedModelError("linear trees are not supported")
        values = _numbers(tree, "leaf_value", np.float64)
        n_internal = int(tree["num_leaves"]) - 1
        if n_internal == 0:
            roots.append(~leaf_count)
        else:
            roots.append(nodes)
            children = [_numbers(tree, k, np.int64) for k in ("left_child", "right_child")]
            for side, out in zip(children, (left, right), strict=True):
                # Internal children shift by the nodes before this tree, leaves by its leaves.
                out.append(np.where(side >= 0, side + nodes, ~(~side + leaf_count)))
            feature.append(_numbers(tree, "split_feature", np.int64))
            kinds = _numbers(tree, "decision_type", np.int64)
            decision.append(kinds)
            split = _numbers(tree, "threshold", np.float64)
            threshold.append(split)
            boundaries = _numbers(tree, "cat_boundaries", np.int64)
            is_cat = (kinds & _CATEGORICAL_BIT) != 0
            # A categorical node's threshold is the index of its bitset.
            index = np.where(is_cat, split, 0).astype(np.int64)
            has = boundaries.size > 0
            cat_start.append(np.where(is_cat, word_count + boundaries[index] if has else 0, 0))
            length = boundaries[index + 1] - boundaries[index] if has else np.zeros_like(index)
            cat_len.append(np.where(is_cat, length, 0))
            tree_words = _numbers(tree, "cat_threshold", np.uint32)
            words.append(tree_words)
            word_count += tree_words.size
        nodes += n_internal
        leaves.append(values)
        leaf_count += values.size

    def cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    kinds = cat(decision, np.int64)
    is_cat = (kinds & _CATEGORICAL_BIT) != 0
    starts, lengths, all_words = (
        cat(cat_start, np.int64),
        cat(cat_len, np.int64),
        cat(words, np.uint32),
    )
    chosen = np.flatnonzero(is_cat)
    width = 32 * int(lengths.max()) if lengths.size else 0
    table = np.zeros((chosen.size, width), dtype=np.bool_)
    for row, node in enumerate(chosen):
        bitset = all_words[starts[node] : starts[node] + lengths[node]]
        bits = (bitset[:, None] >> np.arange(32, dtype=np.uint32)[None, :]) & 1
        table[row, : bits.size] = bits.reshape(-1) == 1
    cat_row = np.zeros(kinds.size, dtype=np.int64)
    cat_row[chosen] = np.arange(chosen.size)
    return Forest(
        roots=np.array(roots, dtype=np.int64),
        feature=cat(feature, np.int64),
        threshold=cat(threshold, np.float64),
        categorical=is_cat,
        default_left=(kinds & _DEFAULT_LEFT_BIT) != 0,
        missing=(kinds >> 2) & 3,
        left=cat(left, np.int64),
        right=cat(right, np.int64),
        leaf_value=cat(leaves, np.float64),
        cat_row=cat_row,
        cat_table=table,
        n_features=n_features,
        sigmoid=sigmoid,
        zero_missing=bool((((kinds >> 2) & 3) == _MISSING_ZERO).any()),
    )


def decisions(forest: Forest, inputs: np.ndarray) -> np.ndarray:
    """Whether each row goes left at each internal node (rows × nodes), by LightGBM's rules.

    TreeSHAP (`models.tree_shap`) needs every node's decision, not only those on the path.
    """
    x = np.asarray(inputs, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < forest.n_features:
        raise ValueError(f"inputs have shape {x.shape}, the model needs {forest.n_features}")
    x = np.where(np.abs(x) <= _ZERO, 0.0, x)
    n, nodes = x.shape[0], forest.feature.size
    at = np.tile(np.arange(nodes), n)
    values = x[np.repeat(np.arange(n), nodes), forest.feature[at]]
    left: np.ndarray = forest._goes_left(at, values).reshape(n, nodes)
    return left


def node_counts(text: str, num_iteration: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Training rows through each internal node and each leaf, numbered as in `Forest`.

    `internal_count` and `leaf_count` of the model text: the cover TreeSHAP weighs by.
    Raises UnsupportedModelError when the text lacks them.
    """
    _, trees = _sections(text)
    if num_iteration is not None and num_iteration > 0:
        trees = trees[:num_iteration]
    internal: list[np.ndarray] = []
    leaves: list[np.ndarray] = []
    for tree in trees:
        n_leaves = int(tree["num_leaves"])
        leaf = _numbers(tree, "leaf_count", np.float64)
        node = _numbers(tree, "internal_count", np.float64)
        if n_leaves == 1 and leaf.size == 0:
            leaf = np.zeros(1, dtype=np.float64)  # a lone leaf: nothing to attribute
        if leaf.size != n_leaves or node.size != n_leaves - 1:
            raise UnsupportedModelError("the model text has no leaf and node counts")
        internal.append(node)
        leaves.append(leaf)
    empty = np.zeros(0, dtype=np.float64)
    return (
        np.concatenate(internal) if internal else empty,
        np.concatenate(leaves) if leaves else empty,
    )
