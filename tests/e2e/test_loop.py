"""The loop, end to end on the embedded default: `make all`, serve the champion, watch drift, new
data in, `make all` again, the better model promoted and picked up by the running server.

The data is a generated classification set (3,000 rows, so the test split is large enough for the
PSI of an undrifted column to stay well under 0.1). The drift is a sensor that starts reading
`x0` 3 standard deviations high: the drift gauges must see it in that column alone, Prometheus's
drift alert expression must hold, and the new snapshot, drawn from the shifted world with its
labels, must give a challenger that beats the champion (a forest, which does not extrapolate) on
the new holdout. The server reloads while a client keeps sending requests: every answer is a 200.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.conftest import REPO
from tests.monitoring.conftest import Prometheus, prometheus_tool, start_prometheus, stop
from tests.monitoring.promql import alerts, to_prometheus
from tests.serving.server import Server, start_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.serving, pytest.mark.monitoring]

MODEL = "loop-classifier"
FEATURES = ("x0", "x1", "x2", "x3")
SHIFT_SD = 3.0
PIPELINE = (
    "experiment=loop",
    f"registered_model={MODEL}",
    "data.target=label",
    "data.task=classification",
    'data.columns={"x0":"numeric","x1":"numeric","x2":"numeric","x3":"numeric"}',
    "train.families=[random_forest]",
    "train.random_forest.n_estimators=30",
    "tune.families=[random_forest]",
    "tune.trials=2",
    "tune.workers=1",
)


def world(rows: int, seed: int, x0_offset: float = 0.0) -> pd.DataFrame:
    """Rows of the generating process; `x0_offset` is what a miscalibrated sensor adds to x0."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(rows, len(FEATURES)))
    signal = 2.0 * features[:, 0] + features[:, 1] - 0.5 * features[:, 2]
    label = (signal + rng.normal(scale=0.3, size=rows) > 0).astype(int)
    frame = pd.DataFrame(features, columns=list(FEATURES))
    frame["x0"] += x0_offset
    frame["label"] = label
    return frame


def bad_snapshots() -> dict[str, pd.DataFrame]:
    good = world(300, seed=7)
    retyped = good.astype({"x1": str})
    retyped.loc[::3, "x1"] = "n/a"
    return {
        "empty": good.iloc[:0],
        "missing-column": good.drop(columns=["x3"]),
        "retyped-column": retyped,
        "single-class": good.assign(label=0),
    }


def make_all(tmp: Path, store_uri: str, source: Path) -> subprocess.CompletedProcess[str]:
    overrides = [
        *PIPELINE,
        f"data.source={source}",
        f"data.prepared_dir={tmp / 'prepared'}",
        f"data.raw_dir={tmp / 'raw'}",
        f"tune.storage=sqlite:///{tmp / 'optuna.db'}",
    ]
    args = " ".join(f"--set {shlex.quote(o)}" for o in overrides)  # make hands ARGS to a shell
    env = {**os.environ, "MLFLOW_TRACKING_URI": store_uri}
    env.pop("MLFLOW_REGISTRY_URI", None)
    return subprocess.run(
        # -o: the venv counts as built (the test runs inside it); stamps go to the temp folder.
        ["make", "-o", ".venv/.installed", "all", f"ARGS={args}", f"STAMPS={tmp / 'stamps'}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def rows_of(frame: pd.DataFrame) -> list[list[float]]:
    return frame[list(FEATURES)].to_numpy().tolist()


def drift(server: Server) -> dict[str, float]:
    """The drift gauges by column ("" for prediction drift), read from /metrics."""
    gauges: dict[str, float] = {}
    for line in server.get("/metrics").body.decode().splitlines():
        if line.startswith("mlops_feature_drift_psi{"):
            column = line.split('column="')[1].split('"')[0]
            gauges[column] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("mlops_prediction_drift_psi"):
            gauges[""] = float(line.rsplit(" ", 1)[1])
    return gauges


def send(server: Server, frame: pd.DataFrame, batch: int = 100) -> None:
    rows = rows_of(frame)
    for start in range(0, len(rows), batch):
        reply = server.post("/invocations", {"instances": rows[start : start + batch]})
        assert reply.status == 200, reply.body


class Client(threading.Thread):
    """Sends one small request after another until stopped; keeps every status and version."""

    def __init__(self, server: Server, rows: list[list[float]]):
        super().__init__(daemon=True)
        self.server, self.rows = server, rows
        self.answers: list[tuple[int, str]] = []
        self.done = threading.Event()

    def wait_for_version(self, version: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not (self.answers and self.answers[-1][1] == version):
            assert time.monotonic() < deadline, f"still serving {self.answers[-1:]}"
            time.sleep(0.2)

    def run(self) -> None:
        while not self.done.is_set():
            reply = self.server.post("/invocations", {"instances": self.rows})
            self.answers.append((reply.status, reply.headers.get("x-model-version", "")))
            self.done.wait(0.05)


@pytest.fixture
def store(tmp_path: Path) -> str:
    (tmp_path / "mlruns").mkdir()
    return f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"


@pytest.fixture
def served(tmp_path: Path, store: str) -> Iterator[Server]:
    """`make all` on the first world, then the champion served, checking the alias every second."""
    first = tmp_path / "world-1.csv"
    world(3000, seed=1).to_csv(first, index=False)
    done = make_all(tmp_path / "run-1", store, first)
    assert done.returncode == 0, done.stdout + done.stderr
    logs = tmp_path / "server"
    logs.mkdir()
    overrides = ["serve.reload_interval_s=1", "serve.drift_window_rows=600"]
    server = start_server(store, f"models:/{MODEL}@champion", logs, overrides)
    yield server
    server.stop()


@pytest.fixture
def prometheus(served: Server, tmp_path: Path) -> Iterator[Prometheus]:
    (tmp_path / "prometheus").mkdir()
    prometheus = start_prometheus(
        prometheus_tool("prometheus"), {"model-server": served.port}, tmp_path / "prometheus"
    )
    yield prometheus
    stop(prometheus.process)


def feature_drift_alert() -> str:
    (alert,) = [a for a in alerts() if a["alert"] == "MlopsFeatureDrift"]
    return to_prometheus(alert["expr"])


def test_the_loop(tmp_path: Path, store: str, served: Server, prometheus: Prometheus) -> None:
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    first_version = str(client.get_model_version_by_alias(MODEL, "champion").version)

    # The world as trained on: no column drifts.
    send(served, world(600, seed=2))
    calm = drift(served)
    assert set(calm) == {*FEATURES, ""}
    assert max(calm.values()) < 0.1, calm

    # The sensor drifts: x0 alone, and the alert's expression holds in Prometheus.
    send(served, world(600, seed=3, x0_offset=SHIFT_SD))
    drifted = drift(served)
    assert drifted["x0"] > 0.25, drifted
    assert all(drifted[c] < 0.1 for c in FEATURES[1:]), drifted
    firing = prometheus.wait_for_series(feature_drift_alert(), timeout_s=30)
    assert {s["metric"]["column"] for s in firing} == {"x0"}, prometheus.log()

    # Bad snapshots stop at prepare with one line; the champion and the server stay as they are.
    for name, bad in bad_snapshots().items():
        path = tmp_path / f"{name}.csv"
        bad.to_csv(path, index=False)
        done = make_all(tmp_path / name, store, path)
        errors = [line for line in done.stderr.splitlines() if " ERROR " in line]
        assert done.returncode != 0 and len(errors) == 1, (name, done.stderr)
        assert "Traceback" not in done.stderr, (name, done.stderr)
        assert str(client.get_model_version_by_alias(MODEL, "champion").version) == first_version
    assert served.post("/invocations", {"instances": rows_of(world(1, seed=6))}).status == 200

    # New data from the drifted world, with its labels: the pipeline runs again on it.
    second = tmp_path / "world-2.csv"
    world(3000, seed=4, x0_offset=SHIFT_SD).to_csv(second, index=False)
    traffic = Client(served, rows_of(world(5, seed=5, x0_offset=SHIFT_SD)))
    traffic.start()
    try:
        done = make_all(tmp_path / "run-2", store, second)
        assert done.returncode == 0, done.stdout + done.stderr
        champion = str(client.get_model_version_by_alias(MODEL, "champion").version)
        assert champion != first_version, "the challenger was not promoted"
        traffic.wait_for_version(champion, timeout_s=60)
    finally:
        traffic.done.set()
        traffic.join(timeout=10)

    statuses = {status for status, _ in traffic.answers}
    versions = [version for _, version in traffic.answers]
    assert statuses == {200}, statuses
    assert versions[0] == first_version and versions[-1] == champion
