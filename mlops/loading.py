"""Loading a registered model version to evaluate it: the pyfunc model and the estimator inside.

`pyfunc` is what a server runs (signature enforcement included); `estimator` is the fitted object
underneath, with `predict(frame)` and, for classifiers, `predict_proba(frame)` and `classes_`,
which `mlops.evaluate.evaluate` needs for ROC AUC and log loss. Our scikit-learn models are the
`sklearn` flavor (skops, trusted types from the MLmodel file); the PyTorch MLP is a pyfunc python
model whose `model` attribute is the `TorchMLP`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import mlflow.models
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow import MlflowClient

from mlops.errors import RegistryError
from mlops.models.torch_mlp import torch_thread_limit


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    version: str
    tags: dict[str, str]
    pyfunc: Any  # mlflow.pyfunc.PyFuncModel
    estimator: Any


def load_registered(name: str, version: str) -> RegisteredModel:
    tags = dict(MlflowClient().get_model_version(name, version).tags)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    return RegisteredModel(name, str(version), tags, pyfunc, estimator_of(pyfunc, name, version))


def trained_on(name: str, version: str) -> str | None:
    """The data digest a version was trained on, without loading the model itself."""
    tags = MlflowClient().get_model_version(name, version).tags
    if tags.get("data_digest"):
        return str(tags["data_digest"])
    metadata = mlflow.models.get_model_info(f"models:/{name}/{version}").metadata or {}
    digest = metadata.get("data_digest")
    return None if digest is None else str(digest)


def estimator_of(pyfunc: Any, name: str = "model", version: str = "?") -> Any:
    if "sklearn" in pyfunc.metadata.flavors:
        return pyfunc.get_raw_model()
    estimator = getattr(pyfunc.unwrap_python_model(), "model", None)
    if estimator is None or not callable(getattr(estimator, "predict", None)):
        raise RegistryError(f"{name} v{version} is neither a sklearn model nor our PyTorch model")
    return estimator


def latency_p95_ms(
    pyfunc: Any, features: pd.DataFrame, rows: int, repeats: int, torch_threads: int
) -> float:
    """p95 wall time of `pyfunc.predict` on `rows` rows (drawn from `features`), after a warm-up.

    PyTorch runs with `torch_threads` intra-op threads, as the server does: on a small network the
    thread pool's overhead, not the arithmetic, dominates (about 10x on a busy 2-core machine).
    """
    batch = features.sample(n=rows, replace=rows > len(features), random_state=0)
    with torch_thread_limit(torch_threads):
        pyfunc.predict(batch)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            pyfunc.predict(batch)
            times.append((time.perf_counter() - started) * 1000.0)
    return float(np.percentile(times, 95))
