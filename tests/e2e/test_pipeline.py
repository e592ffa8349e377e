"""prepare -> train through the real scripts on a temp MLflow store, then the registered model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.models import Model

from tests.conftest import csv_overrides, mixed_frame, use_store
from tests.e2e.helpers import config_args, run_main

pytestmark = pytest.mark.e2e

CHALLENGER = "models:/breast-cancer-classifier@challenger"


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """prepare -> train with the default config, once for the tests that only read the result."""
    folder = tmp_path_factory.mktemp("trained-default")
    (folder / "mlruns").mkdir()
    with pytest.MonkeyPatch.context() as monkeypatch:
        for _ in use_store(store_uri(folder), monkeypatch):
            args = config_args(folder)
            assert run_main("prepare.py", *args) == 0
            assert run_main("train.py", *args) == 0
            yield folder


@pytest.fixture
def trained_default(trained_once: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The store `trained_once` filled, pointed at again (a test between may have moved MLflow)."""
    yield from (trained_once for _ in use_store(store_uri(trained_once), monkeypatch))


def store_uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"


def test_every_family_is_a_finished_run_with_metrics_plots_and_provenance(
    trained_default: Path,
) -> None:
    runs = mlflow.search_runs(
        experiment_names=["breast-cancer"], filter_string="tags.`mlops.step` = 'train'"
    )
    assert sorted(runs["tags.mlops.family"]) == ["linear", "random_forest", "torch_mlp"]
    assert set(runs["status"]) == {"FINISHED"}
    for column in ("validation_roc_auc", "test_accuracy", "test_f1", "test_log_loss"):
        assert runs[f"metrics.{column}"].notna().all()
    client = MlflowClient()
    for run_id, family in zip(runs["run_id"], runs["tags.mlops.family"], strict=True):
        names = {a.path for a in client.list_artifacts(run_id, "plots")}
        assert {"plots/confusion_matrix.png", "plots/roc_curve.png", "plots/pr_curve.png"} <= names
        assert "plots/feature_importance.png" in names
        assert ("plots/loss_curve.png" in names) == (family == "torch_mlp")
        params = client.get_run(run_id).data.params
        assert len(params["data_digest"]) == 64 and params["git_commit"]


def test_best_run_is_registered_as_challenger_and_predicts(trained_default: Path) -> None:
    client = MlflowClient()
    version = client.get_model_version_by_alias("breast-cancer-classifier", "challenger")
    runs = mlflow.search_runs(
        experiment_names=["breast-cancer"], filter_string="tags.`mlops.step` = 'train'"
    )
    best = runs.loc[runs["metrics.validation_roc_auc"].idxmax()]
    assert version.run_id == best["run_id"]
    assert version.tags["family"] == best["tags.mlops.family"]
    model = mlflow.pyfunc.load_model(CHALLENGER)
    info = Model.load(CHALLENGER)
    example = info.load_input_example(mlflow.artifacts.download_artifacts(CHALLENGER))
    predictions = np.asarray(model.predict(example))
    assert len(predictions) == len(example) and set(predictions) <= {0, 1}
    assert model.metadata.signature is not None
    assert model.metadata.metadata["data_digest"] == version.tags["data_digest"]
    assert "columns" in model.metadata.metadata["data_profile"]


def test_the_model_carries_drift_bins_and_its_validation_predictions(
    trained_default: Path,
) -> None:
    metadata = mlflow.pyfunc.load_model(CHALLENGER).metadata.metadata
    for column in metadata["data_profile"]["columns"].values():
        shares = column["bins"]["shares"]
        assert len(shares) == len(column["bins"]["edges"]) + 1
        assert sum(shares) + column["missing_fraction"] == pytest.approx(1.0)
    predicted = metadata["prediction_profile"]["shares"]
    assert set(predicted) <= {"0", "1"} and sum(predicted.values()) == pytest.approx(1.0)


def test_logged_requirements_are_honest(trained_default: Path) -> None:
    client = MlflowClient()
    runs = mlflow.search_runs(
        experiment_names=["breast-cancer"], filter_string="tags.`mlops.step` = 'train'"
    )
    for run_id, family in zip(runs["run_id"], runs["tags.mlops.family"], strict=True):
        path = mlflow.artifacts.download_artifacts(f"runs:/{run_id}/model/requirements.txt")
        requirements = Path(path).read_text()
        assert ("torch==" in requirements) == (family == "torch_mlp"), family
        assert "+cpu" not in requirements
    assert client.search_registered_models()


@pytest.mark.slow
def test_mixed_type_csv_with_missing_values_trains_and_serves_every_family(
    mlflow_store: str, tmp_path: Path, mixed_csv: Path
) -> None:
    args = config_args(
        tmp_path, *csv_overrides(mixed_csv), "experiment=churn", "registered_model=churn"
    )
    assert run_main("prepare.py", *args) == 0
    assert run_main("train.py", *args) == 0
    runs = mlflow.search_runs(
        experiment_names=["churn"], filter_string="tags.`mlops.step` = 'train'"
    )
    rows = mixed_frame(rows=6, seed=3).drop(columns=["churned"])
    rows.loc[0, "income"] = np.nan
    rows.loc[1, "city"] = None
    rows.loc[2, "city"] = "marseille"  # a category never seen in training
    for run_id in runs["run_id"]:
        model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
        predictions = np.asarray(model.predict(rows))
        assert len(predictions) == 6 and set(predictions) <= {0, 1}
    assert runs["metrics.test_roc_auc"].min() > 0.7


@pytest.mark.slow
def test_regression_config_trains_and_registers(mlflow_store: str, tmp_path: Path) -> None:
    args = config_args(tmp_path, base="regression.yaml")
    assert run_main("prepare.py", *args) == 0
    assert run_main("train.py", *args) == 0
    model = mlflow.pyfunc.load_model("models:/diabetes-regressor@challenger")
    test = pd.read_parquet(tmp_path / "prepared" / "test.parquet")
    predictions = np.asarray(model.predict(test.drop(columns=["target"])))
    assert predictions.dtype.kind == "f" and np.isfinite(predictions).all()
    predicted = model.metadata.metadata["prediction_profile"]
    assert len(predicted["edges"]) == 9 and sum(predicted["shares"]) == pytest.approx(1.0)
    runs = mlflow.search_runs(
        experiment_names=["diabetes"], filter_string="tags.`mlops.step` = 'train'"
    )
    assert runs["metrics.test_rmse"].notna().all() and runs["metrics.test_r2"].notna().all()
