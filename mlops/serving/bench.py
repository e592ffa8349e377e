"""`make bench`: our server against `mlflow models serve`, side by side, on the same models.

In a temp MLflow store it registers our three families (bench_models.py), then for each model
starts `mlflow models serve` and `scripts/serve.py` in turn with the same worker count, drives
both with the same load generator (loadgen.py) through the MLflow protocol (`dataframe_split`,
1 and 100 rows, concurrency 1, 8 and 64) and measures time to ready and resident memory. The
table goes to stdout, `<out>/serving.md` and `<out>/serving.json`, with the issue's targets.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np

from mlops.serving.bench_models import BenchModel, bench_data, register_bench_models
from mlops.serving.bench_report import markdown_report, targets
from mlops.serving.loadgen import LoadResult, load_tool, run_load, tree_rss_bytes
from mlops.serving.model import Options, load_model
from mlops.serving.source import parse_source
from mlops.serving.validate import Table
from mlops.tracking import configure_tracking

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
CONCURRENCY = (1, 8, 64)
ROWS = (1, 100)
SERVERS = ("mlflow", "ours")
READY_PATHS = {"mlflow": "/ping", "ours": "/v2/health/ready"}
_WARM_S = 1.0  # seconds of load of a cell's own shape before it is measured


@dataclass(frozen=True)
class BenchOptions:
    config: Path
    out: Path
    families: tuple[str, ...]
    workers: int
    duration_s: float


@dataclass(frozen=True)
class ServerRun:
    server: str
    family: str
    ready_s: float
    rss_mb: float
    loads: dict[str, LoadResult]  # "<rows>x<concurrency>" -> result


def run_bench(options: BenchOptions) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mlops-bench-") as folder:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(folder) / 'mlflow.db'}"
        os.environ.pop("MLFLOW_REGISTRY_URI", None)
        configure_tracking()
        models = register_bench_models(list(options.families))
        results = [bench_family(m, options, Path(folder)) for m in models]
    report: dict[str, Any] = {
        "load_generator": load_tool(),
        "workers": options.workers,
        "cpus": os.cpu_count(),
        "duration_s": options.duration_s,
        "in_process_ms": {m.family: times for m, (_, times) in zip(models, results, strict=True)},
        "runs": [dataclasses.asdict(run) for runs, _ in results for run in runs],
    }
    report["targets"] = targets(report)
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "serving.json").write_text(json.dumps(report, indent=2))
    (options.out / "serving.md").write_text(markdown_report(report))
    return report


def payload(rows: int) -> bytes:
    frame, _ = bench_data()
    split = {"columns": list(frame.columns), "data": frame.head(rows).to_numpy().tolist()}
    return json.dumps({"dataframe_split": split}).encode()


class InProcess:
    """The same model loaded here: the model alone (what our fast path calls) and MLflow's
    pyfunc (what `mlflow models serve` calls), timed on the bench payload's rows."""

    def __init__(self, model: BenchModel) -> None:
        self.served = load_model(parse_source(model.uri, model.family), warmup_rows=8, threads=1)
        self.pyfunc = mlflow.pyfunc.load_model(self.served.ref.uri)
        self.frame, _ = bench_data()

    def model_ms(self, rows: int) -> float:
        table = Table(self.frame.head(rows).to_numpy())
        return _median_ms(lambda: self.served.predict([table], Options()))

    def pyfunc_ms(self, rows: int) -> float:
        head = self.frame.head(rows)
        return _median_ms(lambda: self.pyfunc.predict(head), repeat=100)


def _median_ms(call: Any, repeat: int = 300) -> float:
    call()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return float(np.median(samples) * 1e3)


def bench_family(
    model: BenchModel, options: BenchOptions, folder: Path
) -> tuple[list[ServerRun], dict[str, float]]:
    """Start both servers (one at a time, so each time to ready is measured alone), then run
    every load cell on one and then the other, so background noise hits both alike. Each
    concurrency-1 cell is preceded by a short load of its own shape (`_WARM_S`): a server idle
    for a few seconds, while the other one was measured, starts slow on this host. Ours are
    bracketed by the in-process predict time they are compared with, measured just before the
    warm-up and just after the cell, so a slow spell of the machine hits both alike."""
    local = InProcess(model)
    in_process = {f"pyfunc_{rows}": local.pyfunc_ms(rows) for rows in ROWS}
    started: dict[str, tuple[subprocess.Popen[bytes], str, float]] = {}
    try:
        for kind in SERVERS:
            started[kind] = _launch(kind, model, options, folder)
        for _, url, _ in started.values():
            run_load(url, payload(1), 8, 2.0)  # warm-up: first requests, lazy imports, caches
        loads: dict[str, dict[str, LoadResult]] = {kind: {} for kind in SERVERS}
        for rows in ROWS:
            for connections in CONCURRENCY:
                for kind, (_, url, _) in started.items():
                    timed = connections == 1 and kind == "ours"
                    before = local.model_ms(rows) if timed else 0.0
                    if connections == 1:  # not before c8/c64: a backlog would spill into the cell
                        run_load(url, payload(rows), 1, _WARM_S)
                    result = run_load(url, payload(rows), connections, options.duration_s)
                    if timed:
                        in_process[f"model_{rows}"] = (before + local.model_ms(rows)) / 2
                    loads[kind][f"{rows}x{connections}"] = result
                    log.info("%s %s %dx%d: %s", kind, model.family, rows, connections, result)
        runs = [
            ServerRun(kind, model.family, ready_s, tree_rss_bytes(process.pid) / 2**20, loads[kind])
            for kind, (process, _, ready_s) in started.items()
        ]
        return runs, in_process
    finally:
        for process, _, _ in started.values():
            _stop(process)


def _launch(
    kind: str, model: BenchModel, options: BenchOptions, folder: Path
) -> tuple[subprocess.Popen[bytes], str, float]:
    port = _free_port()
    log_path = folder / f"{kind}-{model.family}.log"
    began = time.perf_counter()
    process = _start(kind, model, port, options, log_path)
    try:
        _wait_ready(f"http://127.0.0.1:{port}{READY_PATHS[kind]}", process, log_path)
    except RuntimeError:
        _stop(process)
        raise
    return process, f"http://127.0.0.1:{port}/invocations", time.perf_counter() - began


def _start(
    kind: str, model: BenchModel, port: int, options: BenchOptions, log_path: Path
) -> subprocess.Popen[bytes]:
    if kind == "ours":
        command = [sys.executable, str(REPO / "scripts" / "serve.py"), "--config"]
        command += [str(options.config), "--port", str(port), "--model-uri", model.uri]
        command += ["--workers", str(options.workers)]
    else:
        command = [str(Path(sys.executable).with_name("mlflow")), "models", "serve"]
        command += ["-m", model.uri, "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
        command += ["-w", str(options.workers)]
    # `mlflow models serve` runs `uvicorn` from PATH: put this environment's bin folder first.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    with log_path.open("wb") as log_file:
        return subprocess.Popen(
            command,
            cwd=REPO,
            env={**os.environ, "PATH": path},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready after 180 s:\n{log_path.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)  # the group this bench started: server + workers
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
