"""Real processes for the monitoring tests: Prometheus's own tools and server, a model server.

promtool and prometheus come from the machine (Debian's `prometheus` package; .ci/run installs
it). Without them these tests skip with a message saying how to get them; with
`MLOPS_REQUIRE_PROMETHEUS=1` (set by .ci/run) that skip is a failure instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops.config import LinearParams
from mlops.registry import register
from mlops.tracking import use_experiment
from tests.conftest import REPO, unmeasured
from tests.e2e.helpers import wait_for_http
from tests.serving.conftest import breast_cancer, log_ours, using
from tests.serving.server import Server, free_port, start_server

HOW_TO_GET = "install Prometheus (apt-get install prometheus: promtool and prometheus)"
SCRAPE_INTERVAL_S = 1


def prometheus_tool(name: str) -> str:
    """Path of `promtool` or `prometheus`; skips (fails in CI) when it is missing."""
    found = shutil.which(name)
    if found is None:
        message = f"{name} not found: {HOW_TO_GET}"
        if os.environ.get("MLOPS_REQUIRE_PROMETHEUS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def promtool() -> str:
    return prometheus_tool("promtool")


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query through the HTTP API; the result's series (an error fails the test)."""
        query = urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/query?{query}", timeout=10) as reply:
                body = json.load(reply)
        except urllib.error.HTTPError as err:
            raise AssertionError(f"query {expr!r} failed: {err.read().decode()}") from None
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait_for_series(self, expr: str, timeout_s: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.query(expr)
            if result or time.monotonic() > deadline:
                return result
            time.sleep(SCRAPE_INTERVAL_S)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_prometheus(binary: str, targets: dict[str, int], directory: Path) -> Prometheus:
    """Prometheus on 127.0.0.1 scraping each job's target every second; ready when it says so."""
    config = {
        "global": {"scrape_interval": f"{SCRAPE_INTERVAL_S}s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
            for job, port in targets.items()
        ],
    }
    (directory / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    command = [
        binary,
        f"--config.file={directory / 'prometheus.yml'}",
        f"--storage.tsdb.path={directory / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    log_path = directory / "prometheus.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    prometheus = Prometheus(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"prometheus exited with {process.returncode}:\n{prometheus.log()}"
            )
        try:
            with urllib.request.urlopen(f"{prometheus.url}/-/ready", timeout=2):
                return prometheus
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    stop(process)
    raise AssertionError(f"prometheus not ready in 60 s:\n{prometheus.log()}")


def stop(process: subprocess.Popen[bytes], timeout_s: float = 20) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real model server (scripts/serve.py) with the breast-cancer classifier as champion."""
    root = tmp_path_factory.mktemp("monitoring-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    frame, target = breast_cancer()
    with using(uri):
        use_experiment("monitoring-tests")
        register(log_ours("linear", LinearParams(), frame, target), "bc", "champion", {})
    server = start_server(uri, "models:/bc@champion", tmp_path_factory.mktemp("model-server"))
    yield server
    server.stop()


def exporter_script() -> str:
    """The tracking server's metrics exporter, as k8s/base/tracking-server.yaml runs it."""
    docs = yaml.safe_load_all((REPO / "k8s" / "base" / "tracking-server.yaml").read_text())
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (exporter,) = [
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "metrics"
    ]
    assert exporter["command"] == ["python", "-c"]
    script: str = exporter["args"][0]
    return script


@dataclass
class Exporter:
    port: int
    metrics_dir: Path
    process: subprocess.Popen[bytes]
    tracking_url: str = ""  # the tracking server writing to metrics_dir, if one runs


def start_exporter(metrics_dir: Path) -> Exporter:
    port = free_port()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "METRICS_PORT": str(port)}
    process = subprocess.Popen([sys.executable, "-c", exporter_script()], env=unmeasured(env))
    try:
        wait_for_http(f"http://127.0.0.1:{port}/metrics", process, timeout_s=30)
    except AssertionError:
        stop(process)
        raise
    return Exporter(port, metrics_dir, process)


@pytest.fixture(scope="session")
def tracking_exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exporter]:
    """A tracking server pod in miniature: a real `mlflow server --expose-prometheus` writing its
    request metrics to a multiprocess directory, and the exporter serving them."""
    root = tmp_path_factory.mktemp("tracking-server")
    metrics_dir = root / "prometheus"
    metrics_dir.mkdir()
    server = start_tracking_server(root, metrics_dir)
    try:
        exporter = start_exporter(metrics_dir)
        exporter.tracking_url = server.url
        yield exporter
        stop(exporter.process)
    finally:
        stop(server.process)


@dataclass
class TrackingServer:
    url: str
    process: subprocess.Popen[bytes]


def start_tracking_server(root: Path, metrics_dir: Path) -> TrackingServer:
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        f"--backend-store-uri=sqlite:///{root / 'mlflow.db'}",
        f"--default-artifact-root={root / 'artifacts'}",
        "--host=127.0.0.1",
        f"--port={port}",
        "--workers=1",
        f"--expose-prometheus={metrics_dir}",
    ]
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    with (root / "server.log").open("wb") as log_file:
        process = subprocess.Popen(
            command, env=unmeasured(env), stdout=log_file, stderr=subprocess.STDOUT
        )
    server = TrackingServer(f"http://127.0.0.1:{port}", process)
    try:
        wait_for_http(f"{server.url}/health", process, timeout_s=60)
    except AssertionError:
        stop(process)
        raise AssertionError((root / "server.log").read_text(errors="replace")) from None
    return server
