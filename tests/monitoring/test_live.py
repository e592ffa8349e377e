"""A real Prometheus scrapes a real model server and a real tracking server's metrics (through the
exporter its pod runs); every query of the dashboards and every alert's quantity returns series.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.monitoring.conftest import (
    Exporter,
    Prometheus,
    prometheus_tool,
    start_exporter,
    start_prometheus,
    stop,
)
from tests.monitoring.promql import (
    alerts,
    dashboard_expressions,
    quantity,
    to_prometheus,
)
from tests.serving.conftest import breast_cancer
from tests.serving.server import Server

pytestmark = [pytest.mark.monitoring, pytest.mark.serving, pytest.mark.slow]

SERIES_TIMEOUT_S = 30
QUERIES = [to_prometheus(e) for e in dashboard_expressions()] + [
    quantity(a["expr"]) for a in alerts()
]


def _send_traffic(server: Server) -> None:
    """Predictions on both protocols, a refused request and an out-of-profile row."""
    rows = breast_cancer()[0].to_numpy().tolist()
    assert server.post("/invocations", {"instances": rows[:8]}).status == 200
    payload = {"inputs": [{"name": "x", "shape": [2, 30], "datatype": "FP64", "data": rows[:2]}]}
    assert server.post("/v2/models/bc/infer", payload).status == 200
    assert server.post("/invocations", {"instances": [[v * 100 for v in rows[0]]]}).status == 200
    assert server.post("/invocations", {"no": "rows"}).status == 400


@pytest.fixture(scope="module")
def prometheus(
    model_server: Server, tracking_exporter: Exporter, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    binary = prometheus_tool("prometheus")
    targets = {"model-server": model_server.port, "mlflow": tracking_exporter.port}
    prometheus = start_prometheus(binary, targets, tmp_path_factory.mktemp("prometheus"))
    try:
        for job in targets:
            assert prometheus.wait_for_series(f'up{{job="{job}"}} == 1', SERIES_TIMEOUT_S), (
                f"{job} not scraped:\n{prometheus.log()}"
            )
        # Counters must move between scrapes for rates to be more than zero.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            _send_traffic(model_server)
            # Not /health: MLflow leaves its health and version checks out of the metrics.
            search = "/api/2.0/mlflow/experiments/search?max_results=1"
            urllib.request.urlopen(f"{tracking_exporter.tracking_url}{search}", timeout=10).close()
            time.sleep(0.5)
        yield prometheus
    finally:
        stop(prometheus.process)


@pytest.mark.parametrize("expr", QUERIES)
def test_query_returns_series(prometheus: Prometheus, expr: str) -> None:
    assert prometheus.wait_for_series(expr, SERIES_TIMEOUT_S), f"no series for {expr}"


def test_tracking_exporter_serves_what_the_workers_write(tracking_exporter: Exporter) -> None:
    # A worker of the tracking server, in miniature: prometheus-client in multiprocess mode.
    worker = (
        "from prometheus_client import Counter\n"
        "Counter('exporter_check_requests', 'test', ['status']).labels('200').inc(3)\n"
    )
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tracking_exporter.metrics_dir)}
    subprocess.run([sys.executable, "-c", worker], env=env, check=True, timeout=60)
    url = f"http://127.0.0.1:{tracking_exporter.port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    assert 'exporter_check_requests_total{status="200"} 3.0' in text


def test_tracking_exporter_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    # As PID 1 in its container the exporter would ignore SIGTERM without its own handler, and
    # the pod would wait out its grace period.
    exporter = start_exporter(tmp_path)
    try:
        exporter.process.send_signal(signal.SIGTERM)
        assert exporter.process.wait(timeout=10) == 0
    finally:
        stop(exporter.process)
