"""The whole pipeline beyond one machine: tracking server and Optuna study both on PostgreSQL.

prepare -> train -> tune (3 worker processes, one PostgreSQL study per family) -> promote ->
serve from the remote registry; then a new champion promoted through the server is picked up by
the running model server. And the study-level guarantees on PostgreSQL: the trial budget (the
target, plus at most one trial per other worker), and a worker killed mid-trial leaves its trial
failed and retried, not stuck.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from tests.distributed.conftest import TrackingServer, create_database, unique_names
from tests.e2e.helpers import config_args, run_main, run_process
from tests.serving.server import Server, start_server
from tests.tune.conftest import SLOW_TRIALS, TUNE_FAST, finished, kill, start_tune

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def optuna_on_postgres(postgres_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    # Its own database: MLflow and Optuna both keep an `alembic_version` table.
    url = create_database(postgres_server)
    monkeypatch.setenv("OPTUNA_STORAGE", url)
    return url


def studies(storage: optuna.storages.BaseStorage) -> list[optuna.Study]:
    names = optuna.study.get_all_study_names(storage)
    return [optuna.load_study(study_name=name, storage=storage) for name in names]


def wait_for_running_trial(
    storage: optuna.storages.BaseStorage, process: multiprocessing.Process
) -> FrozenTrial:
    """A trial that started a moment ago, once one is finished (one storage: one connection pool,
    where loading the study by URL in a loop would open a pool per call)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.is_alive(), "the tuning process ended before it could be interrupted"
        for study in studies(storage):
            running = [
                t
                for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                if "worker" in t.user_attrs
                and t.datetime_start is not None
                and 0.3 < time.time() - t.datetime_start.timestamp() < 1.5
            ]
            if finished(study) and running:
                return running[0]
        time.sleep(0.05)
    raise AssertionError("no running trial to interrupt")


def predict(server: Server, rows: pd.DataFrame) -> tuple[str, list[object]]:
    split = rows.to_dict(orient="split")
    reply = server.post("/invocations", {"dataframe_split": split})
    assert reply.status == 200, reply.body
    headers = {name.lower(): value for name, value in reply.headers.items()}
    return headers["x-model-version"], reply.json()["predictions"]


def wait_for_version(server: Server, rows: pd.DataFrame, version: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predict(server, rows)[0] == version:
            return
        time.sleep(0.5)
    raise AssertionError(f"the server never switched to version {version}:\n{server.log()}")


def test_whole_pipeline_on_tracking_server_and_postgres_study(
    tracking_server: TrackingServer, optuna_on_postgres: str, tmp_path: Path
) -> None:
    names = unique_names("pipeline")
    model_name = names[1].split("=", 1)[1]
    # The scikit-learn families: the MLP's round trip through a tracking server has a test of
    # its own (test_tracking_server.py), and here it would only double the time.
    families = "[linear, random_forest]"
    args = config_args(
        tmp_path,
        *names,
        *TUNE_FAST,
        f"train.families={families}",
        f"tune.families={families}",
        "tune.trials=6",
    )
    assert run_main("prepare.py", *args) == 0
    assert run_main("train.py", *args) == 0
    tuned = run_process("tune.py", *args, "--workers", "3")
    assert tuned.returncode == 0, tuned.stderr
    for study in studies(optuna.storages.RDBStorage(optuna_on_postgres)):
        assert 6 <= len(finished(study)) <= 6 + 2, study.study_name  # 3 workers
        assert not study.get_trials(states=(TrialState.RUNNING,))
    promoted = run_process("promote.py", *args)
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    client = MlflowClient(tracking_uri=tracking_server.url)
    champion = client.get_model_version_by_alias(model_name, "champion").version

    rows = pd.read_parquet(tmp_path / "prepared" / "test.parquet").drop(columns=["target"]).head(3)
    server = start_server(
        tracking_server.url,
        f"models:/{model_name}@champion",
        tmp_path,
        overrides=[names[1], "serve.reload_interval_s=1"],
    )
    try:
        version, predictions = predict(server, rows)
        assert version == str(champion) and len(predictions) == 3
        # A new champion, promoted through the tracking server while the model server runs.
        assert run_main("train.py", *args) == 0
        challenger = client.get_model_version_by_alias(model_name, "challenger").version
        again = run_process("promote.py", *args, "--ignore-champion")
        assert again.returncode == 0, again.stdout + again.stderr
        wait_for_version(server, rows, str(challenger), timeout_s=60)
    finally:
        assert server.stop() == 0


def test_postgres_study_stops_at_its_budget_and_retries_a_killed_worker_trial(
    tracking_server: TrackingServer, optuna_on_postgres: str, tmp_path: Path
) -> None:
    # Eight trials, as in tests/tune/test_workers.py: the survivor still starts trials after the
    # killed one's grace period (3 s). With five, on a quiet machine it sometimes reached the
    # target first, and a dead trial the target no longer needs is left as it is.
    budget = ("tune.trials=8",)
    args = config_args(tmp_path, *unique_names("study"), *TUNE_FAST, *SLOW_TRIALS, *budget)
    assert run_main("prepare.py", *args) == 0
    first = start_tune(tmp_path / "first.log", *args)
    second = start_tune(tmp_path / "second.log", *args)
    storage = optuna.storages.RDBStorage(optuna_on_postgres)
    victim = wait_for_running_trial(storage, first)
    kill(victim.user_attrs["worker"]["pid"])
    for process in (first, second):
        process.join(timeout=240)
    exit_codes = sorted(p.exitcode for p in (first, second))
    assert exit_codes == [-9, 0], [(tmp_path / n).read_text() for n in ("first.log", "second.log")]
    (study,) = studies(storage)
    assert 8 <= len(finished(study)) <= 8 + 1  # two workers
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))
    assert study.trials[victim.number].state == TrialState.FAIL
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1 and retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
