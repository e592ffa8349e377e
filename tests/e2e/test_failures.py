"""Bad input: one clear message, a non-zero exit, no trace, no half output, no RUNNING run."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from mlops import tracking
from tests.e2e.helpers import config_args, run_main, run_process

pytestmark = pytest.mark.e2e


def assert_clean_failure(result: object, *expected: str) -> None:
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert result.returncode == 1, stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, stderr
    for text in expected:
        assert text in errors[0], errors[0]


def assert_no_output_and_no_running_run(tmp_path: Path) -> None:
    assert not (tmp_path / "prepared").exists()
    raw = tmp_path / "raw"
    assert not raw.exists() or not any(raw.iterdir()), "a refused input's snapshot was kept"
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert all(run.info.status != "RUNNING" for run in runs)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        (b'a,b,target\n1,2,0\n3,"4,1\n5,6,7,8,9\n', "cannot be parsed as CSV"),
        (b"\xff\xfe\x00garbage\x00\xff", "cannot be parsed as CSV"),
        (b"a,b,label\n" + b"1,2,0\n" * 60, "target column 'target' not found"),
    ],
    ids=["missing-file", "corrupt-csv", "binary-file", "missing-target"],
)
def test_bad_data_file_fails_cleanly(
    mlflow_store: str, tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "input.csv"
    if content is not None:
        path.write_bytes(content)
    result = run_process("prepare.py", *config_args(tmp_path, f"data.source={path}"))
    assert_clean_failure(result, message, str(path) if content is None else message)
    assert_no_output_and_no_running_run(tmp_path)


def test_bad_config_value_names_the_key(mlflow_store: str, tmp_path: Path) -> None:
    result = run_process("prepare.py", *config_args(tmp_path, "data.test_fraction=lots"))
    assert_clean_failure(result, "data.test_fraction")
    assert_no_output_and_no_running_run(tmp_path)


def test_train_without_prepared_data_says_to_run_prepare(mlflow_store: str, tmp_path: Path) -> None:
    result = run_process("train.py", *config_args(tmp_path))
    assert_clean_failure(result, "run prepare first")


@pytest.mark.slow
def test_failure_mid_training_marks_the_run_failed_and_registers_nothing(
    mlflow_store: str, tmp_path: Path
) -> None:
    args = config_args(tmp_path, "train.families=[linear, torch_mlp]")
    assert run_process("prepare.py", *args).returncode == 0
    # A CPU-only machine asked for CUDA: the error comes from inside the torch_mlp run.
    result = run_process("train.py", *args, "--set", "train.torch_mlp.device=cuda")
    assert_clean_failure(result, "no CUDA device")
    runs = mlflow.search_runs(experiment_names=["breast-cancer"], output_format="list")
    statuses = {r.data.tags.get("mlops.family"): r.info.status for r in runs}
    assert statuses == {None: "FINISHED", "linear": "FINISHED", "torch_mlp": "FAILED"}
    assert MlflowClient().search_registered_models() == []


def test_the_next_step_fails_the_runs_a_dead_process_left_running(
    mlflow_store: str, tmp_path: Path
) -> None:
    # A run whose process died without ending it (killed, or cut off from the tracking server),
    # and one whose process lives: prepare marks the first FAILED, with why, and leaves the other.
    exited = subprocess.Popen(["true"])
    exited.wait()
    dead_pid = str(exited.pid)
    client = MlflowClient()
    # Its artifacts in the test's folder (a bare create_experiment would use ./mlruns).
    artifacts = (tmp_path / "artifacts").as_uri()
    experiment_id = client.create_experiment("breast-cancer", artifact_location=artifacts)
    host = socket.gethostname()
    abandoned = client.create_run(
        experiment_id, tags={"mlops.step": "train", "mlops.host": host, "mlops.pid": dead_pid}
    )
    live = client.create_run(
        experiment_id,
        tags={"mlops.step": "tune", "mlops.host": host, "mlops.pid": str(os.getpid())},
    )
    # Runs of another host (a pod gone, or still at work): told apart by their heartbeat.
    silent, beating = (
        client.create_run(
            experiment_id,
            tags={"mlops.host": "pod-a", "mlops.pid": "7", "mlops.heartbeat": str(int(when))},
        )
        for when in (time.time() - tracking.STALE_AFTER_S - 60, time.time())
    )
    assert run_main("prepare.py", *config_args(tmp_path)) == 0
    failed = client.get_run(abandoned.info.run_id)
    assert failed.info.status == "FAILED"
    assert failed.data.tags["mlops.failure_reason"].startswith(f"process {dead_pid} on {host}")
    assert client.get_run(silent.info.run_id).info.status == "FAILED"
    reason = client.get_run(silent.info.run_id).data.tags["mlops.failure_reason"]
    assert reason.startswith("no heartbeat from pod-a for")
    for still in (live, beating):
        assert client.get_run(still.info.run_id).info.status == "RUNNING"
        client.set_terminated(still.info.run_id)


def test_an_open_run_keeps_its_heartbeat_fresh(
    mlflow_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracking, "HEARTBEAT_S", 0.05)
    tracking.use_experiment("heartbeat")
    with tracking.owned_run(run_name="long step") as run:
        first = int(run.data.tags["mlops.heartbeat"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            beat = MlflowClient().get_run(run.info.run_id).data.tags["mlops.heartbeat"]
            if int(beat) > first:
                break
            time.sleep(0.1)
        assert int(beat) > first
    assert run.data.tags["mlops.host"] == socket.gethostname()
