"""Real engines for the beyond-one-machine tests: a throwaway PostgreSQL and `mlflow server`.

PostgreSQL comes from `MLOPS_TEST_POSTGRES_URI` when set, else it is started here with
`scripts/throwaway_postgres.sh` (the machine's initdb / pg_ctl). Without the binaries these tests
skip with a message saying how to get them; with `MLOPS_REQUIRE_POSTGRES=1` (set by .ci/run) that
skip is a failure instead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
import sqlalchemy as sa

from tests.conftest import REPO, unmeasured
from tests.e2e.helpers import wait_for_http
from tests.serving.server import free_port

SCRIPT = REPO / "scripts" / "throwaway_postgres.sh"
HOW_TO_GET = "install PostgreSQL (apt-get install postgresql) or set MLOPS_TEST_POSTGRES_URI"


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URI of a PostgreSQL server's maintenance database (`.../postgres`)."""
    if os.environ.get("MLOPS_TEST_POSTGRES_URI"):
        yield os.environ["MLOPS_TEST_POSTGRES_URI"]
        return
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        message = f"PostgreSQL binaries not found: {HOW_TO_GET}"
        if os.environ.get("MLOPS_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    handle = tmp_path_factory.mktemp("postgres")
    command = [str(SCRIPT), "start", str(handle)]
    started = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert started.returncode == 0, started.stderr
    try:
        yield started.stdout.strip()
    finally:
        subprocess.run([str(SCRIPT), "stop", str(handle)], timeout=60, check=False)


def create_database(server_uri: str) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(server_uri, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return server_uri.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
def postgres_db(postgres_server: str) -> str:
    """A fresh, empty database for one test (the throwaway server goes away with the session)."""
    return create_database(postgres_server)


@dataclass
class TrackingServer:
    """A real `mlflow server` process: PostgreSQL backend, proxied local artifact store."""

    backend_uri: str
    artifacts: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 120.0) -> None:
        command = [
            str(Path(sys.executable).with_name("mlflow")),
            "server",
            "--backend-store-uri",
            self.backend_uri,
            "--artifacts-destination",
            self.artifacts.as_uri(),
            "--serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        log = (self.artifacts.parent / "tracking-server.log").open("ab")
        # Its own process group: `mlflow server` runs uvicorn as a child, and both must go.
        self.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=unmeasured()
        )
        wait_for_http(f"{self.url}/health", self.process, timeout_s)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.process = None


def point_mlflow_at(server: TrackingServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(server.url)
    mlflow.set_registry_uri(server.url)


@pytest.fixture(scope="session")
def shared_tracking_server(
    postgres_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TrackingServer]:
    """One server for the tests that only use it (starting one costs 10-20 s); each test uses
    its own experiment and model names."""
    artifacts = tmp_path_factory.mktemp("shared-tracking") / "artifacts"
    artifacts.mkdir()
    server = TrackingServer(create_database(postgres_server), artifacts, free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tracking_server(
    shared_tracking_server: TrackingServer, monkeypatch: pytest.MonkeyPatch
) -> TrackingServer:
    """The shared `mlflow server` on PostgreSQL; MLFLOW_TRACKING_URI points the pipeline at it."""
    point_mlflow_at(shared_tracking_server, monkeypatch)
    return shared_tracking_server


@pytest.fixture
def own_tracking_server(
    postgres_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TrackingServer]:
    """A server of this test's own, for tests that stop and restart it."""
    artifacts = tmp_path / "server-artifacts"
    artifacts.mkdir()
    server = TrackingServer(postgres_db, artifacts, free_port())
    server.start()
    point_mlflow_at(server, monkeypatch)
    try:
        yield server
    finally:
        server.stop()


def unique_names(prefix: str) -> tuple[str, str, str]:
    """Overrides giving a test its own experiment, model and studies on a shared server."""
    tag = uuid.uuid4().hex[:8]
    return (
        f"experiment={prefix}-{tag}",
        f"registered_model={prefix}-model-{tag}",
        f"tune.study_prefix={prefix}-{tag}",
    )
