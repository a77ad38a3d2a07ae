"""TreeSHAP contributions of a `models.trees.Forest`, numpy only: what `pred_contrib` returns.

LightGBM's `Booster.predict(pred_contrib=True)` runs Lundberg's TreeSHAP per row. Its result
for one leaf and one feature on the leaf's path has a closed form: with the path's distinct
features U (d of them), each with a zero fraction z (the share of training rows the path's
splits on it keep) and a one fraction o (1 if the row takes the path at all those splits,
else 0), the feature gets

    leaf value × (o_i − z_i) × Σ_S |S|!(d−1−|S|)!/d! × Π_{j∈S} o_j × Π_{j∉S, j≠i} z_j

over subsets S of U without i. z and the paths are fixed per model and prepared once; o
comes from the row's decision at every node, so rows and leaves are computed together as
arrays. The sum is the coefficient-weighted polynomial Π_{j≠i} (o_j·x + z_j).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nextoffer.models.trees import Forest, decisions

# Cells (rows × leaves × path length) per block: bounds the working arrays to ~20 MB each
# whatever the model's size; a single row is always one block.
_BLOCK_CELLS = 2_500_000


@dataclass(frozen=True)
class _Group:
    """The leaves whose paths split on exactly `degree` distinct features."""

    degree: int
    slots: np.ndarray  # (leaves, degree) slot numbers, into the per-slot arrays
    zero: np.ndarray  # (leaves, degree) zero fractions
    value: np.ndarray  # (leaves,) leaf values
    order: np.ndarray  # the group's slots (flattened) sorted by feature
    starts: np.ndarray  # where each feature's run starts in `order`
    targets: np.ndarray  # the feature of each run
    weights: np.ndarray  # (degree,) |S|!(d−1−|S|)!/d! by |S|


@dataclass(frozen=True)
class TreeExplainer:
    """Per-feature TreeSHAP contributions (log-odds for a binary booster) of a forest."""

    forest: Forest
    # One slot per (leaf, distinct feature on its path); each slot's conditions (node, side).
    cond_node: np.ndarray
    cond_left: np.ndarray
    cond_start: np.ndarray
    groups: tuple[_Group, ...]

    @classmethod
    def build(cls, forest: Forest, internal: np.ndarray, leaves: np.ndarray) -> TreeExplainer:
        """Prepare the paths of every leaf; `internal`/`leaves` are `trees.node_counts`."""
        slot_features: list[int] = []
        slot_zero: list[float] = []
        cond_node: list[int] = []
        cond_left: list[bool] = []
        cond_start: list[int] = []
        by_degree: dict[int, list[tuple[list[int], float]]] = {}

        def count(code: int) -> float:
            return float(internal[code]) if code >= 0 else float(leaves[~code])

        def walk(code: int, path: list[tuple[int, bool]]) -> None:
            if code >= 0:
                walk(int(forest.left[code]), [*path, (code, True)])
                walk(int(forest.right[code]), [*path, (code, False)])
                return
            features: dict[int, list[tuple[int, bool]]] = {}
            for node, left in path:
                features.setdefault(int(forest.feature[node]), []).append((node, left))
            slots: list[int] = []
            for feature, steps in features.items():
                zero = 1.0
                for node, left in steps:
                    child = int(forest.left[node] if left else forest.right[node])
                    zero = count(child) / count(node) * zero
                slots.append(len(slot_features))
                slot_features.append(feature)
                slot_zero.append(zero)
                cond_start.append(len(cond_node))
                for node, left in steps:
                    cond_node.append(node)
                    cond_left.append(left)
            if slots:
                by_degree.setdefault(len(slots), []).append(
                    (slots, float(forest.leaf_value[~code]))
                )

        for root in forest.roots:
            walk(int(root), [])
        features = np.array(slot_features, dtype=np.int64)
        zeros = np.array(slot_zero, dtype=np.float64)
        groups = []
        for degree, found in sorted(by_degree.items()):
            slots = np.array([s for s, _ in found], dtype=np.int64).reshape(-1, degree)
            flat = features[slots.reshape(-1)]
            order = np.argsort(flat, kind="stable")
            targets, starts = np.unique(flat[order], return_index=True)
            weights = np.array(
                [
                    math.factorial(s) * math.factorial(degree - 1 - s) / math.factorial(degree)
                    for s in range(degree)
                ]
            )
            groups.append(
                _Group(
                    degree,
                    slots,
                    zeros[slots],
                    np.array([v for _, v in found], dtype=np.float64),
                    order,
                    starts,
                    targets,
                    weights,
                )
            )
        return cls(
            forest=forest,
            cond_node=np.array(cond_node, dtype=np.int64),
            cond_left=np.array(cond_left, dtype=np.bool_),
            cond_start=np.array(cond_start, dtype=np.int64),
            groups=tuple(groups),
        )

    def contributions(self, inputs: np.ndarray) -> np.ndarray:
        """Contributions, rows × features (without the bias column `pred_contrib` adds)."""
        x = np.asarray(inputs, dtype=np.float64)
        out = np.zeros((x.shape[0], self.forest.n_features), dtype=np.float64)
        cells = max((g.slots.size for g in self.groups), default=1)
        rows = max(1, _BLOCK_CELLS // cells)
        for start in range(0, x.shape[0], rows):
            out[start : start + rows] = self._block(x[start : start + rows])
        return out

    def _block(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        phi = np.zeros((n, self.forest.n_features), dtype=np.float64)
        if n == 0 or not self.groups:
            return phi
        left = decisions(self.forest, x)
        taken = left[:, self.cond_node] == self.cond_left
        # A slot's one fraction: the row takes the path at every split on that feature.
        one = np.logical_and.reduceat(taken, self.cond_start, axis=1).astype(np.float64)
        for group in self.groups:
            o = one[:, group.slots]  # rows × leaves × degree
            z = group.zero[None, :, :]
            d = group.degree
            contrib = np.empty_like(o)
            for i in range(d):
                poly = np.zeros((*o.shape[:2], d), dtype=np.float64)
                poly[..., 0] = 1.0
                for j in range(d):
                    if j == i:
                        continue
                    shifted = poly[..., :-1] * o[..., j, None]
                    poly *= z[..., j, None]
                    poly[..., 1:] += shifted
                weight = poly @ group.weights
                contrib[..., i] = group.value * (o[..., i] - z[..., i]) * weight
            # Each feature's slots summed (one run per feature), then added to its column.
            runs = np.add.reduceat(contrib.reshape(n, -1)[:, group.order], group.starts, axis=1)
            phi[:, group.targets] += runs
        return phi
