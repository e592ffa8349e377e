"""The servers `make bench` compares, started the same way: one process group each, on a free port.

- `ours`: scripts/serve.py, this repository's server.
- `mlflow`: `mlflow models serve --env-manager local`, from this environment.
- `mlserver`: Seldon's MLServer with its MLflow runtime (mlserver-mlflow), from its own virtual
  environment (`make bench` builds .venv-mlserver: it pins other Starlette/FastAPI versions).
- `ceiling`: benchmarks/ceiling.py, a bare Starlette app that parses the body and answers a
  constant: the upper bound for any server on this stack.

Beside them, for the gRPC rows, `launch_grpc_ceiling`: benchmarks/grpc_ceiling.py, grpc.aio
answering a constant, the upper bound for any Python server on grpcio.

All four take the same request: the MLflow scoring protocol's `dataframe_split` on POST
/invocations (MLServer serves it through the runtime's custom `/invocations` handler). Ours also
serves the Open Inference Protocol, over REST and gRPC (its port in `Started.grpc_target`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parents[1]
SERVERS = ("mlflow", "mlserver", "ceiling", "ours")
READY_PATHS = {
    "mlflow": "/ping",
    "mlserver": "/v2/health/ready",
    "ceiling": "/ping",
    "ours": "/v2/health/ready",
}
READY_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class ServerSpec:
    """What to serve and how: the same for every server of one bench."""

    config: Path  # our server's config
    model_uri: str  # models:/bench-<family>@champion
    workers: int
    mlserver: Path  # the `mlserver` executable in its own environment
    folder: Path  # logs and MLServer's settings go here


@dataclass(frozen=True)
class Started:
    process: subprocess.Popen[bytes]
    url: str  # POST /invocations
    ready_s: float  # from starting the process until the ready path answers 200
    grpc_target: str = ""  # ours: host:port of its v2 gRPC service


def launch(kind: str, spec: ServerSpec) -> Started:
    port, grpc_port = free_port(), free_port()
    log_path = spec.folder / f"{kind}-{tag(spec.model_uri)}.log"
    began = time.perf_counter()
    command = _command(kind, spec, port)
    if kind == "ours":
        command += ["--set", f"serve.grpc_port={grpc_port}"]
    process = _popen(command, log_path)
    try:
        _wait_ready(f"http://127.0.0.1:{port}{READY_PATHS[kind]}", process, log_path)
    except RuntimeError:
        stop(process)
        raise
    url, ready_s = f"http://127.0.0.1:{port}/invocations", time.perf_counter() - began
    return Started(process, url, ready_s, f"127.0.0.1:{grpc_port}" if kind == "ours" else "")


def launch_grpc_ceiling(folder: Path) -> Started:
    port = free_port()
    command = [sys.executable, "-m", "benchmarks.grpc_ceiling", str(port)]
    process = _popen(command, folder / "grpc-ceiling.log")
    target = f"127.0.0.1:{port}"
    try:
        with grpc.insecure_channel(target) as channel:
            grpc.channel_ready_future(channel).result(timeout=READY_TIMEOUT_S)
    except grpc.FutureTimeoutError:
        stop(process)
        log = (folder / "grpc-ceiling.log").read_text()
        raise RuntimeError(f"gRPC ceiling not ready:\n{log}") from None
    return Started(process, "", 0.0, target)


def _command(kind: str, spec: ServerSpec, port: int) -> list[str]:
    where = ["--port", str(port)]
    if kind == "ours":
        command = [sys.executable, str(REPO / "scripts" / "serve.py"), *where]
        command += ["--config", str(spec.config), "--model-uri", spec.model_uri]
    elif kind == "mlflow":
        command = [str(Path(sys.executable).with_name("mlflow")), "models", "serve", *where]
        command += ["-m", spec.model_uri, "--env-manager", "local", "--host", "127.0.0.1"]
    elif kind == "mlserver":
        return [str(spec.mlserver), "start", str(_mlserver_folder(spec, port))]
    elif kind == "ceiling":
        # Our server's uvicorn settings (mlops/serving/server.py): no access log, no lifespan work.
        command = [sys.executable, "-m", "uvicorn", "benchmarks.ceiling:app", *where]
        command += ["--host", "127.0.0.1", "--no-access-log", "--no-server-header"]
        command += ["--lifespan", "off", "--log-level", "warning"]
    else:
        raise ValueError(f"unknown server {kind!r}; expected one of {SERVERS}")
    command += ["--workers", str(spec.workers)]
    return command


def _mlserver_folder(spec: ServerSpec, port: int) -> Path:
    """MLServer's settings.json and model-settings.json: one model, the registry URI as MLflow
    resolves it (MLFLOW_TRACKING_URI is inherited), metrics on their own free port."""
    folder = spec.folder / f"mlserver-{tag(spec.model_uri)}"
    folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        # 0: inference in the server process, so one process whatever `workers` says. Its
        # worker pool (the default) does not start on Python 3.11 with uvloop: the pool's
        # process calls asyncio.get_event_loop() with no loop set and exits with RuntimeError.
        "parallel_workers": 0,
    }
    model = {
        "name": tag(spec.model_uri),
        "implementation": "mlserver_mlflow.MLflowRuntime",
        "parameters": {"uri": spec.model_uri},
    }
    (folder / "settings.json").write_text(json.dumps(settings, indent=2))
    (folder / "model-settings.json").write_text(json.dumps(model, indent=2))
    return folder


def tag(model_uri: str) -> str:
    """bench-linear from models:/bench-linear@champion."""
    return model_uri.removeprefix("models:/").split("@")[0].split("/")[0]


def _popen(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
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
    deadline = time.monotonic() + READY_TIMEOUT_S
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
    raise RuntimeError(f"{url} not ready after {READY_TIMEOUT_S:g} s:\n{log_path.read_text()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)  # the group this bench started: server + workers
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
