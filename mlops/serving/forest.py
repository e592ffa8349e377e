"""A faster predict for fitted random forests and extra-trees: the same trees, without joblib.

scikit-learn's forest sends every tree through joblib, and each call is wrapped to re-apply the
caller's config and every warning filter of the process; then every tree checks its input
again. For our 100-tree forest that was nearly all of a predict: the forest's own predict took
11.3 ms for 1 row and 5.9 ms for 100 in-process; this path 0.02-0.03 and 0.23-0.35 ms.

It finds every row's leaf in every tree, from the float32 matrix the forest converts its input
to, by one of two roads:

* `LeafBitmasks`, for trees of at most 64 leaves and batches of up to `_MAX_BITMASK_TESTS`
  split tests (our 100-tree forest: 652 rows): every split of every tree is tested at once and
  each tree's leaf is read off bitmasks (QuickScorer: Lucchese et al., SIGIR 2015). A dozen
  NumPy calls however many trees there are, and no branch that depends on the data, so it costs
  the same whether or not the CPU has just seen these rows. `Tree.apply` walks each row down
  each tree, 300 calls for 100 trees, on branches the CPU predicts well only for rows it has just
  walked: its 100-row predict took 0.31 ms for the same rows over and over, 0.45 ms for rows
  that change, as requests do.
* Otherwise each fitted tree's underlying `tree_` (the public Tree object that the tree's own
  `predict_proba` / `predict` call once they have checked their input): `Tree.apply`. It is
  the faster one for large batches, and sends missing values (NaN) where the tree learnt to.

Both take the leaves' values (what `Tree.predict` does), add them in the trees' order starting
from zeros and divide by their number: what the forest itself does with n_jobs=1, so the output
is the same to the bit. The path checks the matrix's width itself, once (the tree's own checks
cost about 6 us a tree). The serving model still checks it against the model's own predict at
load (model.py). Single-output forests only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)

_CLASSIFIERS = (RandomForestClassifier, ExtraTreesClassifier)
_REGRESSORS = (RandomForestRegressor, ExtraTreesRegressor)
_LEAF = -1  # children_left of a leaf (sklearn.tree._tree.TREE_LEAF)
_MAX_BITMASK_LEAVES = 64
# Split tests (rows x trees x splits per tree) per call up to which the bitmasks beat Tree.apply,
# by mask width. In-process, rows changing between calls, ms, bitmasks against Tree.apply:
# - 32-bit masks, our 100-tree forest (trees of up to 24 leaves): 1 row 0.03 / 0.43, 100 rows
#   0.23 / 0.45, 400 rows (0.9 M tests) 0.74 / 0.99, 800 rows (1.8 M) 1.46 / 1.69; 100 trees of
#   8 leaves, 800 rows (0.6 M) 0.59 / 1.93;
# - 64-bit masks, 100 trees of 64 leaves: 20 rows (0.13 M) 0.28 / 0.36, 100 rows (0.63 M) 0.84 /
#   0.76, 200 rows 2.29 / 1.22; 500 such trees: 1 row 0.07 / 1.55, 20 rows (0.63 M) 1.49 / 2.68
#   (the 100-tree case sets the cap).
# The caps also bound the call's temporary arrays (9 or 13 bytes a test: 13.5 or 5.2 MB).
_MAX_BITMASK_TESTS = {np.uint32: 1_500_000, np.uint64: 400_000}


class LeafBitmasks:
    """Each tree's leaf for each row, from all the splits tested at once.

    A tree's leaves are numbered left to right, one bit each. A split whose test fails (the row
    goes right) clears the bits of the leaves under its left child. The row's leaf is the
    lowest bit left standing: the failed splits on its road cleared every leaf to its left, and
    no split clears the leaf a row reaches (it is under no failed split's left child)."""

    @classmethod
    def of(cls, trees: tuple[Any, ...], node_values: tuple[np.ndarray, ...]) -> LeafBitmasks | None:
        """The trees' bitmasks, or None when a tree has more leaves than a mask has bits."""
        n_leaves = max(int(np.count_nonzero(tree.children_left == _LEAF)) for tree in trees)
        return cls(trees, node_values, n_leaves) if n_leaves <= _MAX_BITMASK_LEAVES else None

    def __init__(
        self, trees: tuple[Any, ...], node_values: tuple[np.ndarray, ...], n_leaves: int
    ) -> None:
        self.mask_dtype = np.uint32 if n_leaves <= 32 else np.uint64
        self.n_trees = len(trees)
        self.n_splits = max(n_leaves - 1, 1)  # per tree; smaller trees get splits that never fail
        self.width = node_values[0].shape[1]
        shape = (self.n_trees, self.n_splits)
        features = np.zeros(shape, dtype=np.intp)
        thresholds = np.full(shape, np.inf)
        under_left = np.zeros(shape, dtype=self.mask_dtype)
        # At least two columns (a regressor's second is zeros): see `mean`.
        leaf_values = np.zeros((self.n_trees, n_leaves, max(self.width, 2)))
        for i, (tree, values) in enumerate(zip(trees, node_values, strict=True)):
            splits, leaves = _splits_and_leaves(tree)
            if n := len(splits):
                features[i, :n], thresholds[i, :n], under_left[i, :n] = zip(*splits, strict=True)
            leaf_values[i, : len(leaves), : self.width] = values[leaves]
        self.features = features.ravel()
        self.thresholds = _float32_at_most(thresholds.ravel())[:, None]
        self.under_left = under_left.reshape(-1, 1)
        self.leaf_values = leaf_values.reshape(self.n_trees * n_leaves, -1)
        self.max_rows = _MAX_BITMASK_TESTS[self.mask_dtype] // features.size
        # `_leaves` counts a leaf's bit and the cleared bits below it: one more than its number.
        self.before_first_leaf = (np.arange(self.n_trees) * n_leaves - 1)[:, None]

    def mean(self, data: np.ndarray) -> np.ndarray:
        """(rows, width): the trees' mean leaf value for each row of float32 `data`, summed in
        the trees' order. numpy adds "each number individually to the result" when it does not
        sum along the fast axis in memory (`numpy.sum`'s notes), and the trees' axis never is:
        there are at least two columns. + 0.0 turns a sum of -0.0 into the 0.0 the forest's
        sum, started from zeros, gives."""
        leaf_values = self.leaf_values.take(self._leaves(data), axis=0)  # (trees, rows, columns)
        total: np.ndarray = np.add.reduce(leaf_values, axis=0)
        total += 0.0
        total /= self.n_trees
        return total[:, : self.width]

    def _leaves(self, data: np.ndarray) -> np.ndarray:
        """(trees, rows): each tree's leaf, as a row number of `leaf_values`."""
        columns = data.T.copy()  # each feature's values contiguous, for the take below
        failed = columns.take(self.features, axis=0) > self.thresholds  # (splits, rows)
        cleared = np.multiply(failed, self.under_left, dtype=self.mask_dtype)
        per_tree = cleared.reshape(self.n_trees, self.n_splits, -1)
        cleared = np.bitwise_or.reduce(per_tree, axis=1)  # (trees, rows)
        # The leaf is the lowest bit not cleared: cleared ^ (cleared + 1) sets it and all below.
        leaves: np.ndarray = np.bitwise_count(cleared ^ (cleared + self.mask_dtype(1)))
        return leaves + self.before_first_leaf


class ForestRegressorPath:
    """A fitted forest regressor's `predict`: the mean of its trees' predictions."""

    def __init__(self, forest: Any, width: int = 1) -> None:
        self.trees = tuple(tree.tree_ for tree in forest.estimators_)
        self.n_features = int(forest.n_features_in_)
        # Each tree's leaf values, one row per node: what `Tree.predict` takes its rows from
        # (the class fractions of a classifier's nodes, a regressor's node value).
        self.node_values = tuple(
            tree.value.reshape(tree.node_count, -1)[:, :width] for tree in self.trees
        )
        self.bitmasks = LeafBitmasks.of(self.trees, self.node_values)

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self._mean(features)[:, 0]

    def _mean(self, features: np.ndarray) -> np.ndarray:
        data = np.ascontiguousarray(features, dtype=np.float32)  # the forest's own input dtype
        if data.ndim != 2 or data.shape[1] != self.n_features:  # Tree.apply does not check
            raise ValueError(f"expected {self.n_features} features, got shape {data.shape}")
        bitmasks = self.bitmasks
        if bitmasks is not None and data.shape[0] <= bitmasks.max_rows and not np.isnan(data).any():
            return bitmasks.mean(data)
        total = np.zeros((data.shape[0], self.node_values[0].shape[1]), dtype=np.float64)
        for tree, values in zip(self.trees, self.node_values, strict=True):
            total += values.take(tree.apply(data), axis=0)
        total /= len(self.trees)
        return total


class ForestClassifierPath(ForestRegressorPath):
    """A fitted forest classifier's `predict_proba` (the mean of its trees') and `predict`."""

    def __init__(self, forest: Any) -> None:
        super().__init__(forest, width=len(forest.classes_))
        self.classes_ = forest.classes_

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return self._mean(features)

    def predict(self, features: np.ndarray) -> np.ndarray:
        labels: np.ndarray = self.classes_.take(np.argmax(self.predict_proba(features), axis=1))
        return labels


def forest_path(estimator: Any) -> ForestRegressorPath | None:
    """The trees of a fitted single-output forest called directly, else None."""
    if getattr(estimator, "n_outputs_", None) != 1 or not hasattr(estimator, "estimators_"):
        return None
    if isinstance(estimator, _CLASSIFIERS):
        return ForestClassifierPath(estimator)
    if isinstance(estimator, _REGRESSORS):
        return ForestRegressorPath(estimator)
    return None


def _splits_and_leaves(tree: Any) -> tuple[list[tuple[int, float, int]], list[int]]:
    """A tree's splits as (feature, threshold, bits of the leaves under its left child), and
    its leaves' node ids, left to right (a tree of at most 64 leaves: recursion is shallow)."""
    left, right = tree.children_left, tree.children_right
    splits: list[tuple[int, float, int]] = []
    leaves: list[int] = []

    def visit(node: int) -> None:
        if left[node] == _LEAF:
            leaves.append(node)
            return
        first = len(leaves)
        visit(int(left[node]))
        under_left = (1 << len(leaves)) - (1 << first)
        splits.append((int(tree.feature[node]), float(tree.threshold[node]), under_left))
        visit(int(right[node]))

    visit(0)
    return splits, leaves


def _float32_at_most(thresholds: np.ndarray) -> np.ndarray:
    """The largest float32 at most each threshold: for a float32 x, `x <= t` (the tree's test,
    made in float64) holds exactly when `x <= _float32_at_most(t)`, so the tests can stay in
    float32."""
    rounded = thresholds.astype(np.float32)
    over = rounded.astype(np.float64) > thresholds
    rounded[over] = np.nextafter(rounded[over], np.float32(-np.inf))
    return rounded
