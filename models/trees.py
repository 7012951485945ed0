"""The booster's trees as flat arrays, walked by a compiled loop: raw margins of a few rows in microseconds.

``Booster.predict`` spends ~25 us on two rows, nearly all of it in its Python wrapper; the scoring server sends
one or a few rows at a time. This reads the trees through LightGBM's public ``Booster.dump_model`` and walks
them with numba, deciding each split as LightGBM's ``Tree::NumericalDecision`` and
``Tree::CategoricalDecision`` do (``include/LightGBM/tree.h``), and adding the leaf values tree by tree in
double precision, as LightGBM does: the margins are the numbers ``Booster.predict(raw_score=True)`` gives (a
test compares them, NaN, zero, negative and unseen categories included).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numba
import numpy as np

from features.kernel import KEEP_COMPILED

K_ZERO_THRESHOLD = 1e-35  # LightGBM's kZeroThreshold: |x| at or below it is zero for "Zero" missing handling
_MISSING = {"None": 0, "Zero": 1, "NaN": 2}


@dataclass(frozen=True)
class TreeArrays:
    """Every split node of every tree (children >= 0: a node; < 0: leaf ``-child - 1``), their leaves, and
    each categorical split's categories going left (``categories[category_start[i]:category_end[i]]``)."""

    roots: np.ndarray  # int64, per tree: its root node, or -(leaf + 1) for a tree of one leaf
    feature: np.ndarray  # int64
    threshold: np.ndarray  # float64 (numerical splits)
    categorical: np.ndarray  # bool
    missing: np.ndarray  # int64: 0 None, 1 Zero, 2 NaN
    default_left: np.ndarray  # bool
    left: np.ndarray  # int64
    right: np.ndarray  # int64
    category_start: np.ndarray  # int64
    category_end: np.ndarray  # int64
    categories: np.ndarray  # int64
    leaf_value: np.ndarray  # float64
    n_features: int

    @classmethod
    def from_booster(cls, booster: lgb.Booster) -> TreeArrays:
        """The trees up to the booster's best iteration (all of them when it has none), as ``predict`` uses."""
        dump = booster.dump_model(num_iteration=booster.best_iteration if booster.best_iteration > 0 else None)
        if dump.get("num_tree_per_iteration", 1) != 1 or dump.get("average_output"):
            raise ValueError("only single-output boosted trees are supported")
        nodes: list[dict[str, Any]] = []
        leaves: list[float] = []
        categories: list[int] = []
        spans: list[tuple[int, int]] = []

        def add(tree: dict[str, Any]) -> int:
            if "leaf_value" in tree:
                leaves.append(float(tree["leaf_value"]))
                return -len(leaves)
            at = len(nodes)
            nodes.append(tree)
            spans.append((0, 0))
            if tree["decision_type"] == "==":
                start = len(categories)
                categories.extend(int(c) for c in str(tree["threshold"]).split("||"))
                spans[at] = (start, len(categories))
            left, right = add(tree["left_child"]), add(tree["right_child"])
            nodes[at] = {**tree, "left": left, "right": right}
            return at

        roots = [add(info["tree_structure"]) for info in dump["tree_info"]]
        numerical = [n["decision_type"] != "==" for n in nodes]
        return cls(
            roots=np.array(roots, dtype=np.int64),
            feature=np.array([n["split_feature"] for n in nodes], dtype=np.int64),
            threshold=np.array(
                [float(n["threshold"]) if num else 0.0 for n, num in zip(nodes, numerical, strict=True)]
            ),
            categorical=~np.array(numerical, dtype=bool),
            missing=np.array([_MISSING[n["missing_type"]] for n in nodes], dtype=np.int64),
            default_left=np.array([bool(n["default_left"]) for n in nodes], dtype=bool),
            left=np.array([n["left"] for n in nodes], dtype=np.int64),
            right=np.array([n["right"] for n in nodes], dtype=np.int64),
            category_start=np.array([s for s, _ in spans], dtype=np.int64),
            category_end=np.array([e for _, e in spans], dtype=np.int64),
            categories=np.array(categories, dtype=np.int64),
            leaf_value=np.array(leaves, dtype=np.float64),
            n_features=int(dump["max_feature_idx"]) + 1,
        )

    def margins(self, X: np.ndarray) -> np.ndarray:
        """Raw margins of the rows of ``X`` (rows x features; float32 or float64), float64."""
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected a matrix of {self.n_features} columns")
        return _margins(
            np.ascontiguousarray(X, dtype=np.float64),
            self.roots,
            self.feature,
            self.threshold,
            self.categorical,
            self.missing,
            self.default_left,
            self.left,
            self.right,
            self.category_start,
            self.category_end,
            self.categories,
            self.leaf_value,
        )


@numba.njit(nogil=True, cache=KEEP_COMPILED)
def _margins(
    X: np.ndarray,
    roots: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    categorical: np.ndarray,
    missing: np.ndarray,
    default_left: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    category_start: np.ndarray,
    category_end: np.ndarray,
    categories: np.ndarray,
    leaf_value: np.ndarray,
) -> np.ndarray:  # pragma: no cover - compiled
    out = np.zeros(X.shape[0])
    for row in range(X.shape[0]):
        total = 0.0
        for tree in range(roots.shape[0]):
            node = roots[tree]
            while node >= 0:
                value = X[row, feature[node]]
                go_left = False
                if categorical[node]:
                    if not np.isnan(value) and int(value) >= 0:
                        code = int(value)
                        for i in range(category_start[node], category_end[node]):
                            if categories[i] == code:
                                go_left = True
                                break
                else:
                    kind = missing[node]
                    if np.isnan(value) and kind != 2:
                        value = 0.0
                    if (kind == 1 and -K_ZERO_THRESHOLD <= value <= K_ZERO_THRESHOLD) or (
                        kind == 2 and np.isnan(value)
                    ):
                        go_left = default_left[node]
                    else:
                        go_left = value <= threshold[node]
                node = left[node] if go_left else right[node]
            total += leaf_value[-node - 1]
        out[row] = total
    return out
