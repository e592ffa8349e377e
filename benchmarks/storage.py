"""Figures for running beyond one machine: tuning on PostgreSQL, tracking through a server.

    .venv/bin/python -m benchmarks.storage [trials per family, default 15]

Against a throwaway PostgreSQL and a real `mlflow server` on it: tuning throughput (trials per
minute, linear + random_forest studies) with 1, 2 and 3 workers on PostgreSQL storage versus the
embedded SQLite file, and the per-trial cost of MLflow tracking through the server versus the local
store (tracked minus untracked session time, divided by the trial count).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from benchmarks.servers import REPO, free_port
from mlops.cli import setup_logging
from mlops.config import Config, load_config
from mlops.data import PreparedData, load_prepared
from mlops.tracking import configure_tracking, use_experiment
from mlops.tune import run_session
from tests.distributed.conftest import SCRIPT, TrackingServer, create_database


def session(
    config: Config, prepared: PreparedData, stores: tuple[str, str], track: bool, workers: int
) -> float:
    """Seconds for one tuning session on fresh studies with the given Optuna and MLflow stores."""
    os.environ["OPTUNA_STORAGE"], os.environ["MLFLOW_TRACKING_URI"] = stores
    tag = uuid.uuid4().hex[:6]
    tune = dataclasses.replace(config.tune, workers=workers, study_prefix=f"bench-{tag}")
    config = dataclasses.replace(config, experiment=f"bench-{tag}", tune=tune)
    configure_tracking()
    experiment = use_experiment(config.experiment) if track else None
    started = time.perf_counter()
    run_session(config, prepared, experiment)
    return time.perf_counter() - started


def measure(trials: int, postgres: str, server_url: str, folder: Path) -> dict[str, float]:
    config = load_config(
        REPO / "configs" / "default.yaml",
        ["tune.families=[linear, random_forest]", f"tune.trials={trials}"],
    )
    prepared = load_prepared(config.data)
    total = 2 * trials

    def sqlite() -> str:
        return f"sqlite:///{folder / uuid.uuid4().hex}.db"

    storages: dict[str, Callable[[], str]] = {
        "sqlite": sqlite,
        "postgres": lambda: create_database(postgres),
    }
    figures = {}
    for workers in (1, 2, 3):
        for name, storage in storages.items():
            seconds = session(config, prepared, (storage(), sqlite()), True, workers)
            figures[f"trials_per_minute.{name}.{workers}_workers"] = total / seconds * 60
    for where, tracking in (("local", sqlite), ("server", lambda: server_url)):
        untracked = session(config, prepared, (sqlite(), tracking()), False, 1)
        tracked = session(config, prepared, (sqlite(), tracking()), True, 1)
        figures[f"tracking_ms_per_trial.{where}"] = (tracked - untracked) / total * 1000
    return figures


def main(trials: int) -> None:
    setup_logging()
    folder = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    command = [str(SCRIPT), "start", str(folder / "pg")]
    postgres = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()
    artifacts = folder / "artifacts"
    artifacts.mkdir()
    server = TrackingServer(create_database(postgres), artifacts, free_port())
    server.start()
    try:
        figures = measure(trials, postgres, server.url, folder)
    finally:
        server.stop()
        subprocess.run([str(SCRIPT), "stop", str(folder / "pg")], check=False)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
