"""A small but complete registry for tests that copy or move one: runs with params, metrics and
tags, two versions of a registered model with tags and the aliases the pipeline uses, and an
Optuna study with finished trials."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import optuna
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression

from mlops.models.logged import SKOPS_TRUSTED_TYPES

MODEL = "backup-test-model"


@dataclass(frozen=True)
class Populated:
    rows: np.ndarray
    predictions: np.ndarray  # the champion's, on `rows`
    study: str


def populate(tracking_uri: str, artifacts: Path, optuna_storage: str) -> Populated:
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    experiment = mlflow.create_experiment("backup-test", artifact_location=artifacts.as_uri())
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(60, 3))
    labels = (rows[:, 0] + rows[:, 1] > 0).astype(int)
    client = MlflowClient()
    for c in (0.01, 1.0):  # version 1, then version 2 (the champion)
        with mlflow.start_run(experiment_id=experiment, tags={"mlops.step": "train"}):
            mlflow.log_params({"C": c})
            model = LogisticRegression(C=c).fit(rows, labels)
            mlflow.log_metric("accuracy", model.score(rows, labels))
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                serialization_format="skops",
                skops_trusted_types=SKOPS_TRUSTED_TYPES,
                input_example=rows[:2],
                pip_requirements=["scikit-learn", "skops"],
            )
        version = mlflow.register_model(info.model_uri, MODEL).version
        client.set_model_version_tag(MODEL, version, "C", str(c))
    client.set_registered_model_tag(MODEL, "team", "mlops")
    client.set_registered_model_alias(MODEL, "previous", "1")
    client.set_registered_model_alias(MODEL, "champion", "2")
    study = optuna.create_study(storage=optuna_storage, study_name="backup-test")
    study.optimize(lambda trial: trial.suggest_float("x", -1, 1) ** 2, n_trials=3)
    champion = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    return Populated(rows, np.asarray(champion.predict(rows)), "backup-test")


def check_restored(tracking_uri: str, optuna_storage: str, before: Populated) -> None:
    """The restored registry answers as the populated one did."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = MlflowClient()
    model = client.get_registered_model(MODEL)
    assert model.aliases == {"champion": 2, "previous": 1}, model.aliases
    assert model.tags == {"team": "mlops"}
    assert client.get_model_version(MODEL, "1").tags == {"C": "0.01"}
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert sorted(r.data.params["C"] for r in runs) == ["0.01", "1.0"]
    champion = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    np.testing.assert_array_equal(champion.predict(before.rows), before.predictions)
    study = optuna.load_study(study_name=before.study, storage=optuna_storage)
    assert len(study.trials) == 3
