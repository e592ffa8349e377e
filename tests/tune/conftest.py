"""Tuning fixtures: a temp Optuna storage beside the temp MLflow store, small fast studies.

Real everything: SQLite files in tmp_path for both stores, the prepared bundled data set, the
library's own studies and workers. Heartbeats are short so a killed worker's trial goes stale in
seconds.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from pathlib import Path

import optuna
import pytest
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from mlops.config import Config
from mlops.prepare import prepare
from mlops.tuning.workers import process_context
from tests.conftest import ConfigFactory
from tests.e2e.helpers import config_args, run_main

# Small studies over small models: a linear trial takes ~0.1 s, an MLP trial ~1 s.
TUNE_FAST = (
    "tune.trials=4",
    "tune.startup_trials=2",
    "tune.heartbeat_interval_s=1",
    "tune.grace_period_s=3",
    "tune.search_space.random_forest={n_estimators: {type: int, low: 5, high: 20}}",
    "tune.search_space.torch_mlp={learning_rate: {type: float, low: 0.001, high: 0.01, log: true},"
    " hidden_units: {type: categorical, choices: ['16', '32-16']}}",
    "train.torch_mlp.max_epochs=15",
    "train.torch_mlp.patience=50",
)

# For killing: unpruned MLP trials of 60 epochs, a few seconds each.
SLOW_TRIALS = (
    "tune.families=[torch_mlp]",
    "tune.pruner=none",
    "train.torch_mlp.max_epochs=60",
)

TuneConfigFactory = Callable[..., Config]


@pytest.fixture
def optuna_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    monkeypatch.setenv("OPTUNA_STORAGE", url)
    return url


@pytest.fixture
def tune_config(
    mlflow_store: str, optuna_storage: str, make_config: ConfigFactory
) -> TuneConfigFactory:
    """A config with fast tuning settings, its data prepared once per test."""

    def build(*overrides: str) -> Config:
        config = make_config(*TUNE_FAST, *overrides)
        if not config.data.prepared_dir.exists():
            prepare(config)
        return config

    return build


def tune_args(tmp: Path, *overrides: str) -> list[str]:
    return config_args(tmp, *TUNE_FAST, *overrides)


def start_tune(output: Path, *args: str) -> BaseProcess:
    """scripts/tune.py's main in a separate process (spawned, as the tune step's own workers
    are: it inherits this test's environment), its output in `output`."""
    process = process_context().Process(target=_tune_main, args=(list(args), str(output)))
    process.start()
    return process


def _tune_main(args: list[str], output: str) -> None:
    with open(output, "ab") as sink:  # noqa: PTH123 - a file descriptor for dup2
        os.dup2(sink.fileno(), sys.stdout.fileno())
        os.dup2(sink.fileno(), sys.stderr.fileno())
    sys.exit(run_main("tune.py", *args))


def only_study(storage: str | BaseStorage) -> optuna.Study:
    names = optuna.study.get_all_study_names(storage)
    assert len(names) == 1, names
    return optuna.load_study(study_name=names[0], storage=storage)


def finished(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def wait_for_running_trial(url: str, process: BaseProcess, min_finished: int) -> FrozenTrial:
    """A trial that started a moment ago (its heartbeat is recorded), once enough are finished.

    Trials interrupted this way must last a few seconds (`SLOW_TRIALS`), or the one picked may
    end before the kill lands.
    """
    # One storage for the whole wait: opening one from the URL parses Optuna's schema scripts,
    # seconds on a loaded machine, longer than the window in which a trial is picked.
    storage = optuna.storages.RDBStorage(url)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.is_alive(), "the tuning process ended before it could be interrupted"
        if optuna.study.get_all_study_names(storage):
            study = only_study(storage)
            trials = study.get_trials(deepcopy=False)
            running = [
                t
                for t in trials
                if t.state == TrialState.RUNNING
                and "worker" in t.user_attrs
                and t.datetime_start is not None
                and 0.3 < time.time() - t.datetime_start.timestamp() < 1.5
            ]
            if len(finished(study)) >= min_finished and running:
                return running[0]
        time.sleep(0.05)
    raise AssertionError("no running trial to interrupt")


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
