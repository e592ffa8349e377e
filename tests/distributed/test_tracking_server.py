"""The pipeline against a real `mlflow server` on PostgreSQL, and what happens when it goes away."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from tests.distributed.conftest import TrackingServer, unique_names
from tests.e2e.helpers import config_args, run_main

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def test_prepare_and_train_record_everything_on_the_server(
    tracking_server: TrackingServer, tmp_path: Path
) -> None:
    names = unique_names("train")
    args = config_args(tmp_path, *names)
    assert run_main("prepare.py", *args) == 0
    assert run_main("train.py", *args) == 0
    experiment_name, model_name = (n.split("=")[1] for n in names[:2])
    mlflow.set_tracking_uri(tracking_server.url)
    client = MlflowClient()
    experiment = client.get_experiment_by_name(experiment_name)
    assert experiment is not None
    assert experiment.artifact_location.startswith("mlflow-artifacts:")
    version = client.get_model_version_by_alias(model_name, "challenger")
    model = mlflow.pyfunc.load_model(f"models:/{model_name}/{version.version}")
    assert model.metadata.signature is not None
    # Artifacts went through the server's proxy into its own artifact store.
    assert any(tracking_server.artifacts.rglob("MLmodel"))


def wait_for_running_run(url: str, timeout_s: float) -> None:
    client = MlflowClient(tracking_uri=url)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = client.search_runs(
            [e.experiment_id for e in client.search_experiments()],
            filter_string="attributes.status = 'RUNNING' and tags.`mlops.step` = 'train'",
        )
        if runs:
            return
        time.sleep(0.2)
    raise AssertionError("training never started a run")


def test_server_stopped_during_training_fails_in_bounded_time_and_registers_nothing(
    own_tracking_server: TrackingServer, tmp_path: Path
) -> None:
    tracking_server = own_tracking_server
    args = config_args(tmp_path, "train.families=[torch_mlp]")
    assert run_main("prepare.py", *args) == 0
    slow = ["--set", "train.torch_mlp.max_epochs=400", "--set", "train.torch_mlp.patience=400"]
    train = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "train.py"), *args, *slow],
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    wait_for_running_run(tracking_server.url, timeout_s=60)
    tracking_server.stop()
    stopped = time.monotonic()
    _, stderr = train.communicate(timeout=180)
    assert train.returncode == 1, stderr
    assert time.monotonic() - stopped < 90, "the step must give up within a bounded time"
    assert "Traceback" not in stderr, stderr
    assert "MLflow error" in stderr and tracking_server.url.split("//")[1] in stderr, stderr
    tracking_server.start()
    assert MlflowClient(tracking_uri=tracking_server.url).search_registered_models() == []
