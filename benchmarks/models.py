"""The models `make bench` serves: our three families on the breast-cancer data, in a temp store.

Trained with the pipeline's own code (`fit_family`, `log_model`, `register`), so they are exactly
what production serves: signature, input example, data and prediction profiles (drift bins),
skops or models-from-code. Kept
small so the benchmark trains them in seconds: a 100-tree forest, a (64, 32) MLP.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
import pandas as pd
from sklearn.datasets import load_breast_cancer

from mlops.config import ForestParams, LinearParams, MLPParams
from mlops.data import FitInputs
from mlops.models.families import FamilyParams, fit_family
from mlops.models.logged import log_model
from mlops.models.torch_mlp import torch_thread_limit
from mlops.profile import build_profile, prediction_profile
from mlops.registry import CHAMPION, register
from mlops.tracking import use_experiment

FAMILIES: dict[str, FamilyParams] = {
    "linear": LinearParams(),
    "random_forest": ForestParams(n_estimators=100, max_features=0.5),
    "torch_mlp": MLPParams(hidden_units=(64, 32), max_epochs=40, patience=5, device="cpu"),
}


@dataclass(frozen=True)
class BenchModel:
    family: str
    uri: str  # models:/bench-<family>@champion


def bench_data() -> tuple[pd.DataFrame, pd.Series]:
    data = load_breast_cancer(as_frame=True)
    return data.data, data.target


def register_bench_models(families: list[str]) -> list[BenchModel]:
    """Fit, log and register each family as bench-<family>@champion in the current store."""
    use_experiment("serving-bench")
    frame, target = bench_data()
    kinds = dict.fromkeys(frame.columns, "numeric")
    profile = build_profile(frame.assign(target=target), kinds, "target", "classification")
    metadata = {"data_profile": profile, "data_digest": "bench", "git_commit": "bench"}
    models = []
    for family in families:
        inputs = FitInputs((frame, target), (frame, target), kinds, "classification", seed=0)
        with torch_thread_limit(1):  # one thread: a small MLP trains about 10x faster
            model = fit_family(family, FAMILIES[family], inputs)
        with mlflow.start_run(run_name=f"bench-{family}"):
            predictions = prediction_profile(model.predict(frame), "classification")
            logged = {**metadata, "prediction_profile": predictions}
            uri = log_model(model, family, frame, logged).model_uri
        name = f"bench-{family.replace('_', '-')}"
        register(uri, name, CHAMPION, {"purpose": "make bench"})
        models.append(BenchModel(family, f"models:/{name}@{CHAMPION}"))
    return models
