"""The forest path (serving/forest.py): a fitted forest's trees' own predictions, averaged. It
must give what the forest gives, to the bit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, load_wine
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mlops.serving import model as served
from mlops.serving.forest import ForestClassifierPath, forest_path
from mlops.serving.model import Options
from mlops.serving.schema import InputSchema
from mlops.serving.validate import table_from_frame
from tests.serving.conftest import breast_cancer

pytestmark = pytest.mark.serving


def _assert_same(path: Any, fitted: Any, batch: np.ndarray) -> None:
    np.testing.assert_array_equal(path.predict(batch), fitted.predict(batch))
    if hasattr(fitted, "predict_proba"):
        np.testing.assert_array_equal(path.predict_proba(batch), fitted.predict_proba(batch))


@pytest.mark.parametrize("forest", [RandomForestClassifier, ExtraTreesClassifier])
def test_a_classifier_forest_path_predicts_what_the_forest_predicts(forest: Any) -> None:
    frame, target = breast_cancer()
    fitted = forest(n_estimators=25, max_features=0.5, random_state=0).fit(frame.values, target)
    path = forest_path(fitted)
    assert isinstance(path, ForestClassifierPath)
    rows = frame.values[:, ::-1].copy()[:, ::-1]  # a matrix that is not C-contiguous too
    for batch in (rows[:1], rows):
        _assert_same(path, fitted, batch)
    np.testing.assert_array_equal(path.classes_, fitted.classes_)
    with pytest.raises(ValueError, match="30 features"):
        path.predict_proba(rows[:, 1:])


def test_a_three_class_forest_path_predicts_what_the_forest_predicts() -> None:
    wine = load_wine()
    fitted = RandomForestClassifier(n_estimators=25, random_state=0).fit(wine.data, wine.target)
    path = forest_path(fitted)
    assert isinstance(path, ForestClassifierPath)
    _assert_same(path, fitted, wine.data)


@pytest.mark.parametrize("forest", [RandomForestRegressor, ExtraTreesRegressor])
def test_a_regressor_forest_path_predicts_what_the_forest_predicts(forest: Any) -> None:
    diabetes = load_diabetes()
    fitted = forest(n_estimators=25, random_state=0).fit(diabetes.data, diabetes.target)
    path = forest_path(fitted)
    assert path is not None and not hasattr(path, "predict_proba")
    for batch in (diabetes.data[:1], diabetes.data):
        _assert_same(path, fitted, batch)


def test_rows_on_a_split_threshold_go_where_the_tree_sends_them() -> None:
    """Values at each root threshold and next to its float32 rounding: the forest's float32
    conversion must be the path's too."""
    frame, target = breast_cancer()
    fitted = RandomForestClassifier(n_estimators=25, random_state=0).fit(frame.values, target)
    path = forest_path(fitted)
    assert path is not None
    rows = []
    for tree in fitted.estimators_:
        split = 0  # the root: every row meets it
        threshold = tree.tree_.threshold[split]
        rounded = np.float32(threshold)
        for value in (threshold, rounded, *np.nextafter(rounded, np.float32([-np.inf, np.inf]))):
            row = frame.values[len(rows) % len(frame)].copy()
            row[tree.tree_.feature[split]] = value
            rows.append(row)
    _assert_same(path, fitted, np.array(rows))


def test_rows_with_missing_values_go_where_the_trees_learnt_to_send_them() -> None:
    frame, target = breast_cancer()
    values = frame.values.copy()
    values[np.random.default_rng(0).random(values.shape) < 0.1] = np.nan
    fitted = RandomForestClassifier(n_estimators=25, random_state=0).fit(values, target)
    path = forest_path(fitted)
    assert path is not None
    _assert_same(path, fitted, values[:50])


def test_other_models_keep_their_own_predict() -> None:
    diabetes = load_diabetes()
    two_targets = np.column_stack([diabetes.target, diabetes.target * 2])
    multi = RandomForestRegressor(n_estimators=5, random_state=0).fit(diabetes.data, two_targets)
    assert forest_path(multi) is None  # several outputs
    frame, target = breast_cancer()
    boosted = GradientBoostingClassifier(n_estimators=5).fit(frame.values, target)
    assert forest_path(boosted) is None
    assert forest_path(RandomForestClassifier()) is None  # not fitted


def test_a_served_forest_pipeline_takes_the_forest_path(bc_schema: InputSchema) -> None:
    frame, target = breast_cancer()
    names = list(frame.columns)
    pipeline = Pipeline(
        [
            ("columns", ColumnTransformer([("numbers", StandardScaler(), names)])),
            ("model", RandomForestClassifier(n_estimators=25, random_state=0)),
        ]
    ).fit(frame, target)
    features = served._features_path(pipeline, bc_schema, "predict")
    assert features is not None
    assert isinstance(features.estimator, ForestClassifierPath)
    data = table_from_frame(bc_schema, frame).data
    ours = features.predict(data, Options(probabilities=True))
    np.testing.assert_array_equal(ours.values, pipeline.predict(frame))
    np.testing.assert_array_equal(ours.probabilities, pipeline.predict_proba(frame))
