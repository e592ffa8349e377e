"""A registered model is servable as it is by `mlflow models serve --env-manager local`.

The PyTorch MLP is the model worth proving: it is a pyfunc model from code that must find its own
copy of our modules in a fresh process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import unmeasured
from tests.e2e.helpers import config_args, run_main, wait_for_http
from tests.serving.server import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_torch_challenger_served_by_mlflow_models_serve(mlflow_store: str, tmp_path: Path) -> None:
    args = config_args(tmp_path, "train.families=[torch_mlp]")
    assert run_main("prepare.py", *args) == 0
    assert run_main("train.py", *args) == 0
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("mlflow")),
        "models",
        "serve",
        "-m",
        "models:/breast-cancer-classifier@challenger",
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    # A different working directory: the model must not rely on this repository being importable.
    # MLflow execs `uvicorn` from PATH, as in an activated environment.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = unmeasured({**os.environ, "PYTHONPATH": "", "PATH": path})
    process = subprocess.Popen(command, cwd=tmp_path, env=env)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ping", process, timeout_s=120)
        test = pd.read_parquet(tmp_path / "prepared" / "test.parquet").head(4)
        body = {"dataframe_split": test.drop(columns=["target"]).to_dict(orient="split")}
        body["dataframe_split"].pop("index")
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            predictions = json.loads(response.read())["predictions"]
        assert len(predictions) == 4 and set(predictions) <= {0, 1}
    finally:
        process.terminate()
        process.wait(timeout=30)
