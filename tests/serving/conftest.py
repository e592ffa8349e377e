"""Fixtures for the model server: a real MLflow store with registered models, real servers.

One SQLite store per session, filled once: our pipeline's models (trained with the library's own
`fit_family` / `log_model`, so they carry a signature, an input example and the data profile),
a generic pyfunc model logged outside our pipeline (models from code, no metadata) and a version
that fails at warm-up. Servers are `scripts/serve.py` subprocesses on free ports; the tests talk
to them over HTTP with the standard library only.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from sklearn.datasets import load_breast_cancer, load_diabetes

from mlops.config import LinearParams, MLPParams
from mlops.models.families import FamilyParams, FitInputs, fit_family
from mlops.models.logged import log_model
from mlops.models.torch_mlp import torch_thread_limit
from mlops.profile import build_profile, prediction_profile
from mlops.registry import register
from mlops.serving.model import load_model
from mlops.serving.schema import InputSchema
from mlops.serving.settings import parse_source
from mlops.tracking import use_experiment
from tests.conftest import mixed_frame
from tests.serving.server import Server, start_server

GENERIC_MODEL = '''
import time

import numpy as np
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class Generic(PythonModel):
    """Not one of ours: exact dtypes, params, a slow mode for timeout and overload tests."""

    def predict(self, context, model_input, params=None):
        params = params or {}
        time.sleep(float(params.get("sleep_s", 0.0)))
        if (model_input["x"] == -999.0).any():
            raise ValueError("x = -999 breaks this model on purpose")
        label_length = model_input["label"].str.len().to_numpy()
        bonus = np.where(model_input["flag"].to_numpy(dtype=bool), label_length, 0)
        return (model_input["x"] * 2 + model_input["n"] + bonus) * float(params.get("scale", 1.0))


set_model(Generic())
'''

BROKEN_MODEL = """
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class Broken(PythonModel):
    def predict(self, context, model_input, params=None):
        raise RuntimeError("this version is broken on purpose")


set_model(Broken())
"""


@dataclass(frozen=True)
class Store:
    uri: str
    root: Path


@contextlib.contextmanager
def using(store_uri: str) -> Iterator[None]:
    """Point this process's MLflow client at `store_uri`, then restore what was there
    (`set_registry_uri` also writes MLFLOW_REGISTRY_URI into the environment)."""
    saved_env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    saved_uris = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    os.environ["MLFLOW_TRACKING_URI"] = store_uri
    mlflow.set_tracking_uri(store_uri)
    mlflow.set_registry_uri(store_uri)
    try:
        yield
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(saved_uris[0])
        mlflow.set_registry_uri(saved_uris[1])
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def breast_cancer() -> tuple[pd.DataFrame, pd.Series]:
    data = load_breast_cancer(as_frame=True)
    return data.data, data.target


def log_ours(
    family: str,
    params: FamilyParams,
    frame: pd.DataFrame,
    target: pd.Series,
    task: str = "classification",
) -> str:
    """Fit and log one of our families on (frame, target); return the model URI."""
    kinds = {c: "numeric" if frame[c].dtype.kind == "f" else "categorical" for c in frame}
    inputs = FitInputs((frame, target), (frame, target), kinds, task, seed=0)
    model = fit_family(family, params, inputs)
    profile = build_profile(frame.assign(target=target), kinds, "target", task)
    metadata = {
        "data_profile": profile,
        "prediction_profile": prediction_profile(model.predict(frame), task),
        "data_digest": "test",
        "git_commit": "test",
    }
    with mlflow.start_run():
        return str(log_model(model, family, frame, metadata).model_uri)


def log_from_code(
    root: Path, name: str, code: str, frame: pd.DataFrame, output: object, with_example: bool
) -> str:
    path = root / f"{name}.py"
    path.write_text(code)
    signature = infer_signature(frame, output, params={"scale": 1.0, "sleep_s": 0.0})
    example = frame.head(3) if with_example else None
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(path),
            signature=signature,
            input_example=example,
            pip_requirements=["mlflow"],  # skips MLflow's slow dependency capture
        )
    return str(info.model_uri)


def generic_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "x": [0.5, 1.5, 2.5, 3.5],
            "n": np.array([1, 2, 3, 4], dtype=np.int64),
            "label": ["a", "bb", "ccc", "dddd"],
            "flag": [True, False, True, False],
        }
    )


RECORDS_GENERIC = generic_frame().to_dict("records")


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    root = tmp_path_factory.mktemp("serving-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    frame, target = breast_cancer()
    with using(uri):
        use_experiment("serving-tests")  # artifacts beside the database, not in ./mlruns
        linear = log_ours("linear", LinearParams(), frame, target)
        register(linear, "bc-linear", "champion", {})
        register(linear, "bc-reload", "champion", {})
        other = log_ours("linear", LinearParams(C=0.01), frame, target)
        register(other, "bc-reload", "candidate", {})
        broken = log_from_code(root, "broken", BROKEN_MODEL, frame, target.to_numpy(), False)
        register(broken, "bc-reload", "broken", {})
        mixed = mixed_frame()
        features, churned = mixed.drop(columns=["churned"]), mixed["churned"]
        mlp = MLPParams(hidden_units=(16,), max_epochs=10, patience=5, device="cpu")
        with torch_thread_limit(1):  # one thread: a tiny MLP trains about 10x faster
            register(log_ours("torch_mlp", mlp, features, churned), "mixed-mlp", "champion", {})
        diabetes = load_diabetes(as_frame=True)
        ridge = log_ours("linear", LinearParams(), diabetes.data, diabetes.target, "regression")
        register(ridge, "diabetes", "champion", {})
        generic = generic_frame()
        output = (generic["x"] * 2).to_numpy()
        generic_uri = log_from_code(root, "generic", GENERIC_MODEL, generic, output, True)
        register(generic_uri, "generic", "champion", {})
    return Store(uri, root)


@pytest.fixture(scope="session")
def bc_schema(store: Store) -> InputSchema:
    """The input schema the server derives for bc-linear@champion (the breast-cancer columns)."""
    with using(store.uri):
        return load_model(parse_source("models:/bc-linear@champion", "m"), 8, 1).schema


@pytest.fixture(scope="session")
def linear_server(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """bc-linear@champion; small limits so the limit tests stay small."""
    logs = tmp_path_factory.mktemp("linear-server")
    server = start_server(
        store.uri,
        "models:/bc-linear@champion",
        logs,
        overrides=["serve.max_body_bytes=200000", "serve.max_rows=500"],
        env={"MLOPS_ADMIN_TOKEN": "admin-secret"},
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def generic_server(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """generic@champion behind a prediction token; 1 s budget and a 4-request queue."""
    logs = tmp_path_factory.mktemp("generic-server")
    server = start_server(
        store.uri,
        "models:/generic@champion",
        logs,
        overrides=["serve.request_timeout_s=1.0", "serve.max_queue_depth=4"],
        env={"MLOPS_API_TOKEN": "predict-secret"},
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mlp_server(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """mixed-mlp@champion (strings, missing values, the PyTorch fast path) on two workers."""
    logs = tmp_path_factory.mktemp("mlp-server")
    server = start_server(store.uri, "models:/mixed-mlp@champion", logs, workers=2)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def bc_rows() -> list[list[float]]:
    frame, _ = breast_cancer()
    rows: list[list[float]] = frame.to_numpy().tolist()
    return rows


@pytest.fixture(scope="session")
def bc_columns() -> list[str]:
    return [str(c) for c in breast_cancer()[0].columns]


@pytest.fixture(scope="session")
def bc_estimator(store: Store) -> object:
    """The bc-linear champion loaded in this process: what every answer must agree with."""
    with using(store.uri):
        return mlflow.pyfunc.load_model("models:/bc-linear@champion").get_raw_model()


@pytest.fixture(scope="session")
def regression_server(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    logs = tmp_path_factory.mktemp("regression-server")
    server = start_server(store.uri, "models:/diabetes@champion", logs)
    yield server
    server.stop()
