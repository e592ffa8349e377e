"""The features path (serving/columns.py): our models' own fitted transformers on the request
matrix instead of a DataFrame through the ColumnTransformer. It must give what the model gives."""

from __future__ import annotations

import functools
import warnings

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from mlops.models.families import build_preprocessor
from mlops.serving import model as served
from mlops.serving.columns import ColumnsPath, columns_path
from mlops.serving.model import EstimatorPredictor, Options, load_model
from mlops.serving.schema import InputSchema, input_schema
from mlops.serving.settings import parse_source
from mlops.serving.validate import table_from_frame, to_frame
from tests.conftest import mixed_frame
from tests.serving.conftest import Store, breast_cancer, using

pytestmark = pytest.mark.serving


def features_of(name: str) -> pd.DataFrame:
    if name == "mixed-mlp":
        frame = mixed_frame(seed=1).drop(columns=["churned"])
        frame.loc[0, "city"] = "marseille"  # a category the model never saw
        return frame
    if name == "diabetes":
        return load_diabetes(as_frame=True).data
    return breast_cancer()[0]


@pytest.mark.parametrize("name", ["bc-linear", "mixed-mlp", "diabetes"])
def test_our_models_take_the_features_path_and_predict_what_mlflow_predicts(
    store: Store, name: str
) -> None:
    with using(store.uri):
        model = load_model(parse_source(f"models:/{name}@champion", name), 8, threads=1)
        pyfunc = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    predictor = model.predictor
    assert isinstance(predictor, EstimatorPredictor)
    assert isinstance(predictor.inputs.__self__, ColumnsPath)  # type: ignore[attr-defined]
    frame = features_of(name)
    ours = model.predict([table_from_frame(model.schema, frame)], Options()).values
    theirs = np.asarray(pyfunc.predict(frame)).reshape(-1)
    if ours.dtype.kind == "f":
        np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    else:
        np.testing.assert_array_equal(ours, theirs)


def test_the_transform_equals_the_column_transformers_bit_for_bit(store: Store) -> None:
    with using(store.uri):
        model = load_model(parse_source("models:/mixed-mlp@champion", "m"), 8, threads=1)
        pyfunc = mlflow.pyfunc.load_model("models:/mixed-mlp@champion")
    preprocessor = pyfunc.unwrap_python_model().model.preprocessor
    table = table_from_frame(model.schema, features_of("mixed-mlp"))
    path = columns_path(preprocessor, model.schema)
    assert path is not None
    expected = preprocessor.transform(to_frame(model.schema, table.data, exact_types=False))
    np.testing.assert_array_equal(path.transform(table.data), expected)


def _scaled(columns: object, remainder: str = "drop", sparse: float = 0.0) -> ColumnTransformer:
    frame = breast_cancer()[0]
    transformer = ColumnTransformer(
        [("scale", StandardScaler(), columns)], remainder=remainder, sparse_threshold=sparse
    )
    return transformer.fit(frame)


def test_other_layouts_keep_the_dataframe_path(bc_schema: InputSchema) -> None:
    names = list(breast_cancer()[0].columns)
    assert columns_path(_scaled(names[:5]), bc_schema) is not None
    assert columns_path(_scaled([0, 1, 2]), bc_schema) is None  # columns by position
    assert columns_path(_scaled(names[:5], remainder="passthrough"), bc_schema) is None
    assert columns_path(StandardScaler().fit(breast_cancer()[0]), bc_schema) is None


def _first_column_doubled(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[[frame.columns[0]]] * 2  # needs a DataFrame: fails on an array


def test_a_features_path_that_fails_on_the_warm_up_rows_is_not_used(bc_schema: InputSchema) -> None:
    frame, target = breast_cancer()
    names = list(frame.columns)
    doubled = FunctionTransformer(_first_column_doubled)
    pipeline = Pipeline(
        [("columns", ColumnTransformer([("f", doubled, names)])), ("model", LogisticRegression())]
    ).fit(frame, target)
    frames = functools.partial(to_frame, bc_schema, exact_types=False)
    general = EstimatorPredictor(pipeline, frames)
    features = served._features_path(pipeline, bc_schema, "predict")
    assert features is not None
    assert served._fastest(general, features, bc_schema, frame.head(3)) is general
    assert served._fastest(general, None, bc_schema, frame.head(3)) is general


def test_nested_pipelines_are_unrolled_into_the_steps_they_call(bc_schema: InputSchema) -> None:
    """The path calls each fitted step itself, not the Pipeline wrapper: nested Pipelines and
    "passthrough" steps included, it must predict what the Pipeline predicts."""
    frame, target = breast_cancer()
    names = list(frame.columns)
    inner = Pipeline([("scale", StandardScaler()), ("skip", "passthrough")])
    middle = Pipeline([("again", StandardScaler()), ("none", None)])
    pipeline = Pipeline(
        [
            ("columns", ColumnTransformer([("numbers", inner, names)])),
            ("middle", middle),
            ("model", LogisticRegression(max_iter=500)),
        ]
    ).fit(frame, target)
    features = served._features_path(pipeline, bc_schema, "predict")
    assert features is not None
    assert features.estimator is pipeline.steps[-1][1]
    path = features.inputs.__self__  # type: ignore[attr-defined]
    fitted_inner = pipeline.steps[0][1].transformers_[0][1].steps[0][1]
    assert path.parts[0].steps == (fitted_inner,)  # the fitted objects themselves, not copies
    assert path.after == (pipeline.steps[1][1].steps[0][1],)
    data = table_from_frame(bc_schema, frame).data
    options = Options(probabilities=True)
    ours = features.predict(data, options)
    np.testing.assert_array_equal(ours.values, pipeline.predict(frame))
    # The same numbers up to the last bit: the DataFrame path's column-major arrays sum in
    # another order.
    np.testing.assert_allclose(ours.probabilities, pipeline.predict_proba(frame), rtol=1e-12)


def test_the_transformers_get_arrays_without_feature_name_warnings(store: Store) -> None:
    """The fitted transformers keep the column names they were fitted with; the warning they
    give on arrays (the columns are selected by position, in the fitted order) is filtered."""
    with using(store.uri):
        pyfunc = mlflow.pyfunc.load_model("models:/mixed-mlp@champion")
        schema = load_model(parse_source("models:/mixed-mlp@champion", "m"), 8, threads=1).schema
    preprocessor = pyfunc.unwrap_python_model().model.preprocessor
    numbers = preprocessor.transformers_[0][1].steps[0][1]
    assert list(numbers.feature_names_in_) == ["income", "age"]
    table = table_from_frame(schema, features_of("mixed-mlp"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = columns_path(preprocessor, schema)
        assert path is not None
        path.transform(table.data)
    assert hasattr(numbers, "feature_names_in_")


def test_missing_numbers_and_strings_are_imputed_as_the_column_transformer_imputes() -> None:
    frame = mixed_frame(seed=2)
    features, target = frame.drop(columns=["churned"]), frame["churned"]
    kinds = {"income": "numeric", "age": "numeric", "city": "categorical", "plan": "categorical"}
    preprocessor = build_preprocessor(kinds).fit(features, target)
    with_gaps = features.head(40).copy()
    with_gaps.loc[::3, "age"] = np.nan
    with_gaps.loc[1::4, "plan"] = None
    schema = input_schema(infer_signature(with_gaps), None, "test")  # with gaps: optional
    path = columns_path(preprocessor, schema)
    assert path is not None
    data = table_from_frame(schema, with_gaps).data
    np.testing.assert_array_equal(path.transform(data), preprocessor.transform(with_gaps))
