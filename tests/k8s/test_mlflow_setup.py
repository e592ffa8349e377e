"""k8s/base/mlflow_setup.py (the mlflow-setup Job) run for real, then MLflow's basic-auth server
started on the database it prepared, as the tracking server's container starts it: the pipeline
user can log and register, the model server's can load the champion and nothing else."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlops.config import load_config
from tests.e2e.helpers import wait_for_http
from tests.k8s.manifests import K8S, REPO
from tests.serving.server import free_port

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

CONFIG = load_config(REPO / "configs" / "default.yaml")
SETUP = K8S / "base" / "mlflow_setup.py"
USERS = {
    "MLFLOW_AUTH_ADMIN": ("admin", "admin-password-1"),
    "PIPELINE": ("pipeline", "pipeline-password-1"),
    "MODEL_SERVER": ("model-server", "server-password-1"),
}


def _environment(database: str, users: dict[str, tuple[str, str]]) -> dict[str, str]:
    env = {"MLFLOW_BACKEND_STORE_URI": database}
    for prefix, (name, password) in users.items():
        env |= {f"{prefix}_USERNAME": name, f"{prefix}_PASSWORD": password}
    return env


def _setup_as_the_job_runs_it(database: str, users: dict[str, tuple[str, str]]) -> str:
    command = [sys.executable, str(SETUP), "--config", "configs/default.yaml"]
    env = {**os.environ, **_environment(database, users)}
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _setup_again_in_process(
    database: str, users: dict[str, tuple[str, str]], capsys: pytest.CaptureFixture[str]
) -> str:
    """The same file's main(), in this process (MLflow is imported already: seconds saved)."""
    spec = importlib.util.spec_from_file_location("mlflow_setup", SETUP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.MonkeyPatch.context() as env:
        for name, value in _environment(database, users).items():
            env.setenv(name, value)
        assert module.main(["--config", str(REPO / "configs" / "default.yaml")]) == 0
    return capsys.readouterr().out


@pytest.fixture
def server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[str]:
    """The database set up twice (the second time with a new pipeline password), then served."""
    tmp = tmp_path
    database = f"sqlite:///{tmp / 'mlflow.db'}"
    first = _setup_as_the_job_runs_it(
        database, {**USERS, "PIPELINE": ("pipeline", "old-password-1")}
    )
    assert "schema: created" in first
    assert "schema: upgraded" in _setup_again_in_process(database, USERS, capsys)
    # What k8s/base/tracking-server.yaml writes and runs (one worker here).
    ini = tmp / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\ndefault_permission = NO_PERMISSIONS\n"
        f"database_uri = {database}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_AUTH_ADMIN_USERNAME": "admin",
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-only",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    (tmp / "artifacts").mkdir()
    command = [
        str(Path(sys.executable).with_name("mlflow")),
        *("server", "--backend-store-uri", database, "--app-name", "basic-auth"),
        *("--artifacts-destination", str(tmp / "artifacts"), "--serve-artifacts"),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
    ]
    with (tmp / "server.log").open("ab") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", process, 120)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # its graceful shutdown can wait out a 30 s timeout
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _login(monkeypatch: pytest.MonkeyPatch, url: str, user: str) -> MlflowClient:
    name, password = USERS[user]
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", name)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)
    return MlflowClient()


def test_each_user_can_do_its_job_and_no_more(
    server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # One test: the server and the two setup runs cost most of its time.
    client = _login(monkeypatch, server, "PIPELINE")
    mlflow.set_experiment(CONFIG.experiment)
    with mlflow.start_run() as run:
        mlflow.log_text("the model's files", "model/MLmodel")
    uri = f"runs:/{run.info.run_id}/model"
    version = mlflow.register_model(uri, CONFIG.registered_model).version
    client.set_registered_model_alias(CONFIG.registered_model, "champion", version)

    client = _login(monkeypatch, server, "MODEL_SERVER")
    champion = f"models:/{CONFIG.registered_model}@champion"
    downloaded = mlflow.artifacts.download_artifacts(champion, dst_path=str(tmp_path))
    assert (Path(downloaded) / "MLmodel").read_text() == "the model's files"
    with pytest.raises(MlflowException, match="403"):
        client.set_registered_model_alias(CONFIG.registered_model, "champion", version)
    with pytest.raises(MlflowException, match="403"):
        client.create_run(run.info.experiment_id)

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "pipeline")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "old-password-1")  # rotated by the second run
    with pytest.raises(MlflowException, match="401"):
        MlflowClient().search_experiments()
