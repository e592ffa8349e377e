"""A loaded, warmed-up model and how it predicts a batch of validated rows.

`EstimatorPredictor` (the fast path) calls a scikit-learn model's, or our PyTorch MLP's, own
`predict` / `predict_proba` without pyfunc's schema enforcement, which costs more than a linear
model's whole predict and repeats the validation the request already passed. Where the model
starts with a plain ColumnTransformer, its transformers get the request matrix itself (columns.py)
and a final forest is asked through its trees (forest.py), but only if that predicts what the
model does on the warm-up and probe rows. `PyfuncPredictor` serves every other pyfunc model.
A model is ready only after it answered a warm-up prediction; else `ModelLoadError`.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import logging
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import sklearn
from mlflow.exceptions import MlflowException
from sklearn.pipeline import Pipeline

from mlops.serving.columns import columns_path, fitted_steps
from mlops.serving.drift import Reference, reference
from mlops.serving.errors import InputError, ModelLoadError, RegistryUnavailable
from mlops.serving.forest import forest_path
from mlops.serving.schema import InputSchema, data_profile, input_schema, output_datatype
from mlops.serving.settings import ModelRef, ModelSource, resolve
from mlops.serving.validate import Table, table_from_columns, table_from_frame, to_frame

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Options:
    """What a request asks of the model besides predictions."""

    probabilities: bool = False
    params: Mapping[str, Any] = field(default_factory=dict)  # passed to generic pyfunc models


@dataclass(frozen=True)
class Prediction:
    values: Any  # np.ndarray or list: one entry per input row (generic models may differ)
    probabilities: np.ndarray | None = None


class EstimatorPredictor:
    """Anything with `predict(x)` (and `predict_proba(x)` for probabilities), given `inputs(data)`:
    the request matrix as a DataFrame, or as features (`ColumnsPath`, columns.py)."""

    def __init__(
        self, estimator: Any, inputs: Callable[[np.ndarray], Any], method: str = "predict"
    ) -> None:
        self.estimator = estimator
        self.inputs = inputs
        self.method = getattr(estimator, method)
        self.proba = getattr(estimator, "predict_proba", None)
        self.classes = tuple(np.asarray(getattr(estimator, "classes_", ())).tolist())

    def predict(self, data: np.ndarray, options: Options) -> Prediction:
        # Rows were checked already; sklearn's own finiteness and parameter checks are skipped.
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            features = self.inputs(data)
            values = np.asarray(self.method(features))
            probabilities = self.proba(features) if options.probabilities and self.proba else None
        return Prediction(values, probabilities)


class PyfuncPredictor:
    classes: tuple[Any, ...] = ()
    proba = None

    def __init__(self, model: Any, schema: InputSchema) -> None:
        self.model = model
        self.schema = schema

    def predict(self, data: np.ndarray, options: Options) -> Prediction:
        frame = to_frame(self.schema, data, exact_types=True)
        output = self.model.predict(frame, params=dict(options.params) or None)
        if isinstance(output, pd.DataFrame):
            if output.shape[1] != 1:
                return Prediction(output.to_dict(orient="records"))
            output = output.iloc[:, 0]
        return Prediction(output.to_numpy() if isinstance(output, pd.Series) else output)


Predictor = EstimatorPredictor | PyfuncPredictor


@dataclass(frozen=True)
class ServedModel:
    ref: ModelRef
    schema: InputSchema
    predictor: Predictor
    fast_path: bool
    classes: tuple[Any, ...] = ()  # class labels, for classifiers
    datatype: str = "FP64"  # Open Inference Protocol datatype of the predictions
    task: str = ""
    load_seconds: float = 0.0
    torch_threads: int | None = None  # set when the model imported torch: its intra-op threads
    drift: Reference | None = None  # training bins to watch drift against (drift.py), if any

    @property
    def supports_probabilities(self) -> bool:
        return self.predictor.proba is not None

    def check_options(self, options: Options) -> None:
        if options.probabilities and not self.supports_probabilities:
            raise InputError("this model does not return class probabilities", "bad_params")
        if options.params and self.fast_path:
            name = next(iter(options.params))
            raise InputError(f"unknown param {name[:64]!r}: only 'probabilities'", "bad_params")

    def predict(self, tables: Sequence[Table], options: Options) -> Prediction:
        if self.torch_threads is not None:
            _use_torch_threads(self.torch_threads)
        data = tables[0].data if len(tables) == 1 else np.concatenate([t.data for t in tables])
        return self.predictor.predict(data, options)


def load_model(source: ModelSource, warmup_rows: int, threads: int) -> ServedModel:
    """Resolve, load and warm up `source` (blocking; run it in a thread). `threads` caps torch's
    intra-op threads: requests are parallel already, and torch's default of one thread per core
    makes a small MLP several times slower on a small machine."""
    started = time.perf_counter()
    _import_skops_without_torch()
    try:
        ref = resolve(source)
    except Exception as err:  # the registry is down, or the alias or version is gone
        raise RegistryUnavailable(f"cannot look up {source.uri}: {one_line(err)}") from err
    try:
        pyfunc_model = mlflow.pyfunc.load_model(ref.uri)
    except Exception as err:  # MLflow, the network, the file system, the model's own code
        raise ModelLoadError(f"cannot load model {source.uri}: {one_line(err)}") from err
    metadata = pyfunc_model.metadata
    profile = data_profile(metadata.metadata)
    schema = input_schema(metadata.signature, profile, ref.uri)
    predictor = _predictor(pyfunc_model, schema)
    classes = predictor.classes or tuple(profile.get("classes", ()))
    model = ServedModel(
        ref=ref,
        schema=schema,
        predictor=predictor,
        fast_path=isinstance(predictor, EstimatorPredictor),
        classes=classes,
        datatype=output_datatype(metadata.signature, profile),
        task=str(profile.get("task", "")),
        # torch is imported by the model itself, never for a scikit-learn model.
        torch_threads=threads if "torch" in sys.modules else None,
        drift=reference(schema, metadata.metadata),
    )
    warm_up(model, pyfunc_model.input_example, warmup_rows)
    return dataclasses.replace(model, load_seconds=time.perf_counter() - started)


def _use_torch_threads(threads: int) -> None:
    """Set torch's intra-op threads for the calling thread: the setting is per thread (OpenMP),
    so a predict thread would otherwise use torch's default (see `load_model` for why not)."""
    torch = sys.modules["torch"]
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _import_skops_without_torch() -> None:
    """Import skops before any model needs it, with torch hidden: skops walks sklearn's packages
    on import, importing `sklearn.externals.array_api_compat.torch` and so torch: seconds and
    hundreds of MB a scikit-learn model never uses. A torch model imports torch when it loads."""
    if "skops.io" in sys.modules or "torch" in sys.modules:
        return
    sys.modules["torch"] = None  # type: ignore[assignment]  # makes `import torch` fail fast
    try:
        importlib.import_module("skops.io")
    finally:
        del sys.modules["torch"]


def _predictor(pyfunc_model: Any, schema: InputSchema) -> Predictor:
    """Our models (a scikit-learn model, or the TorchMLP inside our pyfunc wrapper): their own
    predict on DataFrames, or the features path when it agrees; any other model: pyfunc."""
    flavors = pyfunc_model.metadata.flavors
    if "sklearn" in flavors:
        estimator = pyfunc_model.get_raw_model()
        method = flavors.get("python_function", {}).get("predict_fn", "predict")
    else:
        try:  # the TorchMLP inside our pyfunc wrapper
            estimator = pyfunc_model.unwrap_python_model().model
        except (MlflowException, AttributeError):  # another flavor or another python model
            estimator = None
        method = "predict"
        if not callable(getattr(estimator, "on_features", None)):
            return PyfuncPredictor(pyfunc_model, schema)
    general = EstimatorPredictor(
        estimator, functools.partial(to_frame, schema, exact_types=False), method
    )
    return _fastest(
        general, _features_path(estimator, schema, method), schema, pyfunc_model.input_example
    )


def _features_path(estimator: Any, schema: InputSchema, method: str) -> EstimatorPredictor | None:
    """A ColumnTransformer's fitted transformers on the request matrix (columns.py), then the
    fitted steps after it, then the final estimator (a forest through its trees, forest.py):
    for a Pipeline(ColumnTransformer, ...) and for our TorchMLP (preprocessor, network)."""
    if isinstance(estimator, Pipeline) and len(estimator.steps) >= 2:
        first = estimator.steps[0][1]
        # The fitted steps after the ColumnTransformer, unrolled (columns.py says why).
        *between, final = fitted_steps([step for _, step in estimator.steps[1:]]) or [None]
    elif callable(getattr(estimator, "on_features", None)):
        first, between, final = estimator.preprocessor, [], estimator.on_features()
    else:
        return None
    path = columns_path(first, schema, after=tuple(between))
    if path is None or not hasattr(final, method):
        return None
    return EstimatorPredictor(forest_path(final) or final, path.transform, method)


def _fastest(
    general: EstimatorPredictor,
    features: EstimatorPredictor | None,
    schema: InputSchema,
    example: Any,
) -> EstimatorPredictor:
    """`features` if it predicts what `general` does on the warm-up rows and the probe rows
    (the same labels or values, probabilities within float32 rounding), else `general`."""
    if features is None:
        return general
    try:
        data = np.concatenate([example_table(schema, example).data, _probe_table(schema).data])
        options = Options(probabilities=general.proba is not None)
        ours, theirs = features.predict(data, options), general.predict(data, options)
        if _close(ours.values, theirs.values) and _close(ours.probabilities, theirs.probabilities):
            return features
    except Exception as err:  # the general path stays; warm-up then judges the model itself
        log.warning("features path failed on the warm-up rows: %s", one_line(err))
        return general
    log.warning("features path disagrees with the model on the warm-up rows; not used")
    return general


def _probe_table(schema: InputSchema) -> Table:
    """Rows with what an input example may lack: typical values, then every nullable column
    null, then every string column a category never seen in training."""
    typical = {c.name: _typical(c) for c in schema.columns}
    nulls = {c.name: None if c.nullable else typical[c.name] for c in schema.columns}
    unseen = {c.name: "unseen" if c.kind == "string" else typical[c.name] for c in schema.columns}
    columns = {name: [typical[name], nulls[name], unseen[name]] for name in typical}
    return table_from_columns(schema, columns, 3)


def _close(x: Any, y: Any) -> bool:
    if x is None or y is None:
        return x is None and y is None
    x, y = np.asarray(x), np.asarray(y)
    if x.dtype.kind == "f" and y.dtype.kind == "f":
        # Float32 networks differ in the last bits with the memory layout of their input.
        return x.shape == y.shape and bool(np.allclose(x, y, rtol=1e-5, atol=1e-9))
    return bool(np.array_equal(x, y))


def warm_up(model: ServedModel, example: Any, rows: int) -> None:
    """Predict the example, then `rows` copies of it; refuse a model that fails or returns junk."""
    try:
        table = example_table(model.schema, example)
        check_prediction(model.predict([table], Options()), table.n_rows)
        batch = [table] * max(1, rows // table.n_rows)
        check_prediction(model.predict(batch, Options()), table.n_rows * len(batch))
    except Exception as err:  # whatever the model raises, it is not ready
        raise ModelLoadError(
            f"warm-up prediction failed for {model.ref.uri}: {one_line(err)}"
        ) from err


def example_table(schema: InputSchema, example: Any) -> Table:
    if isinstance(example, pd.DataFrame) and len(example) and set(schema.names) <= set(example):
        return table_from_frame(schema, example)
    return table_from_columns(schema, {c.name: [_typical(c)] for c in schema.columns}, 1)


def _typical(column: Any) -> Any:
    if column.categories:
        return sorted(column.categories)[0]
    kinds = {"number": 0.0, "integer": 0, "string": "", "boolean": False}
    if column.kind == "number" and column.low is not None and column.high is not None:
        return (column.low + column.high) / 2
    return kinds.get(column.kind)


def check_prediction(prediction: Prediction, n_rows: int) -> None:
    values = prediction.values
    if not hasattr(values, "__len__") or len(values) != n_rows:
        raise ModelLoadError(
            f"model returned a prediction that is not one entry per row ({n_rows})"
        )
    array = np.asarray(values)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ModelLoadError("model returned NaN or infinite predictions")


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:300] if text else ''}"
