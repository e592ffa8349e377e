"""A fitted random forest's (or extra-trees') prediction without joblib: its trees, averaged.

The forest's own `predict_proba` sends every tree through joblib, which re-applies the caller's
config and warning filters around each call and costs several times the trees' own public
`predict_proba(check_input=False)`. The trees' outputs are added in order to zeros and divided by
their number, as the forest does with one job, so the result is the same to the bit
(tests/serving/test_forest.py); model.py still uses this path only if it agrees at load.
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


class ForestRegressorPath:
    """A fitted forest regressor's `predict`: the mean of its trees' `predict`."""

    def __init__(self, forest: Any) -> None:
        self.trees = tuple(forest.estimators_)

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self._mean("predict", features)

    def _mean(self, method: str, features: np.ndarray) -> np.ndarray:
        # The forest's own input dtype; each tree still checks the number of features.
        data = np.ascontiguousarray(features, dtype=np.float32)
        outputs = (getattr(tree, method)(data, check_input=False) for tree in self.trees)
        # Summed onto zeros, as the forest sums (0.0 + -0.0 is 0.0), broadcast to the trees' shape.
        total: np.ndarray = sum(outputs, np.zeros(1)) / len(self.trees)
        return total


class ForestClassifierPath(ForestRegressorPath):
    """A fitted forest classifier's `predict_proba` (the mean of its trees') and `predict`."""

    def __init__(self, forest: Any) -> None:
        super().__init__(forest)
        self.classes_ = forest.classes_

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return self._mean("predict_proba", features)

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
