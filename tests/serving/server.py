"""A model server subprocess on a free port, and a small HTTP client for it (stdlib only)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
SERVE = REPO / "scripts" / "serve.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    token: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> Reply:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return Reply(response.status, dict(response.getheaders()), response.read())
        finally:
            connection.close()

    def post(self, path: str, payload: Any, headers: dict[str, str] | None = None) -> Reply:
        base = {"Content-Type": "application/json"}
        if self.token:
            base["Authorization"] = f"Bearer {self.token}"
        return self.request("POST", path, json.dumps(payload).encode(), {**base, **(headers or {})})

    def get(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        base = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return self.request("GET", path, headers={**base, **(headers or {})})

    def wait_for(self, path: str, status: int = 200, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if self.request("GET", path, timeout=2).status == status:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{path} did not answer {status} in {timeout_s} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, signum: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"server did not stop in {timeout_s} s:\n{self.log()}") from None


def start_server(
    store_uri: str,
    model_uri: str,
    logs: Path,
    overrides: list[str] | None = None,
    env: dict[str, str] | None = None,
    workers: int = 1,
    wait: str = "ready",
) -> Server:
    """Start scripts/serve.py; wait until it is ready (or only live, for `wait="live"`)."""
    port, probe_port, grpc_port = free_port(), free_port(), free_port()
    command = [sys.executable, str(SERVE), "--port", str(port), "--model-uri", model_uri]
    command += ["--set", f"serve.probe_port={probe_port}", "--set", f"serve.grpc_port={grpc_port}"]
    command += ["--workers", str(workers), "--config", str(REPO / "configs" / "default.yaml")]
    # No Service routes to a test server: it stops at once unless a test asks for the drain
    # window (10 s by default, which every server stopped at teardown used to sit out).
    for override in ["serve.drain_s=0", *(overrides or [])]:
        command += ["--set", override]
    environment = {**os.environ, "MLFLOW_TRACKING_URI": store_uri, **(env or {})}
    for name in (
        "MLOPS_API_TOKEN",
        "MLOPS_ADMIN_TOKEN",
        "PROMETHEUS_MULTIPROC_DIR",
        "MLFLOW_REGISTRY_URI",
    ):
        if name not in (env or {}):
            environment.pop(name, None)
    log_path = logs / "server.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, cwd=REPO, env=environment, stdout=log_file, stderr=subprocess.STDOUT
        )
    server = Server(port, process, log_path, token=(env or {}).get("MLOPS_API_TOKEN", ""))
    server.extra["probe_port"] = probe_port
    server.extra["grpc_port"] = grpc_port
    path = "/v2/health/ready" if wait == "ready" else "/v2/health/live"
    try:
        server.wait_for(path)
    except AssertionError:
        server.stop(signal.SIGKILL)
        raise
    return server


def samples(server: Server, name: str) -> list[Any]:
    """The samples of metric `name` in the server's /metrics now."""
    text = server.get("/metrics").body.decode()
    return [s for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]
