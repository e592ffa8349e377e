"""Readiness, hot reload and shutdown on real servers: the alias moves under load, the registry is
down at start-up, a model appears late, SIGTERM arrives mid-request."""

from __future__ import annotations

import http.client
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from mlflow import MlflowClient
from prometheus_client.parser import text_string_to_metric_families

from tests.serving.conftest import RECORDS_GENERIC, Store, using
from tests.serving.server import Reply, Server, free_port, start_server

pytestmark = [pytest.mark.serving, pytest.mark.slow]

ADMIN = {"Authorization": "Bearer admin-secret"}
FAST_RETRY = ["serve.load_retry_initial_s=0.2", "serve.load_retry_max_s=0.5"]


def set_alias(store: Store, name: str, alias: str, version: str) -> None:
    with using(store.uri):
        MlflowClient().set_registered_model_alias(name, alias, version)


def loads(server: Server, kind: str, result: str) -> float:
    text = server.get("/metrics").body.decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "mlops_model_loads_total" and sample.labels == {
                "kind": kind,
                "result": result,
            }:
                return float(sample.value)
    return 0.0


def registry_errors(server: Server) -> float:
    for family in text_string_to_metric_families(server.get("/metrics").body.decode()):
        for sample in family.samples:
            if sample.name == "mlops_registry_errors_total":
                return sample.value
    return 0.0


def eventually(check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def reload_server(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    logs = tmp_path_factory.mktemp("reload-server")
    overrides = ["serve.reload_interval_s=1.0"]
    server = start_server(
        store.uri,
        "models:/bc-reload@champion",
        logs,
        overrides,
        env={"MLOPS_ADMIN_TOKEN": "admin-secret"},
    )
    yield server
    server.stop()


@pytest.fixture
def on_version_1(reload_server: Server, store: Store) -> Server:
    set_alias(store, "bc-reload", "champion", "1")
    reload_server.request("POST", "/admin/reload", headers=ADMIN)
    return reload_server


class Load:
    """Client threads sending predictions until stopped; every reply is kept in order."""

    def __init__(self, send: Callable[[], Reply], clients: int = 6) -> None:
        self.send = send
        self.stopping = threading.Event()
        self.replies: list[list[Reply]] = [[] for _ in range(clients)]
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(clients)]

    def _run(self, i: int) -> None:
        while not self.stopping.is_set():
            try:
                self.replies[i].append(self.send())
            except (OSError, http.client.HTTPException) as err:
                self.errors.append(err)
                return

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join()

    def versions(self) -> set[str]:
        return {r.headers.get("x-model-version", "") for rs in self.replies for r in rs}


def predict_one(server: Server, rows: list[list[float]]) -> Callable[[], Reply]:
    return lambda: server.post("/invocations", {"instances": rows[:3]})


def test_alias_moved_to_a_good_version_under_load(
    on_version_1: Server, store: Store, bc_rows: list[list[float]]
) -> None:
    successes = loads(on_version_1, "reload", "success")
    with Load(predict_one(on_version_1, bc_rows)) as load:
        time.sleep(0.5)
        set_alias(store, "bc-reload", "champion", "2")
        eventually(lambda: "2" in load.versions())
        time.sleep(0.5)
    assert load.errors == []
    statuses = {r.status for rs in load.replies for r in rs}
    assert statuses == {200}
    assert load.versions() == {"1", "2"}
    for replies in load.replies:  # each client: version 1, then version 2, never back
        seen = [r.headers["x-model-version"] for r in replies]
        assert seen == sorted(seen)
        assert seen[-1] == "2"
    assert loads(on_version_1, "reload", "success") == successes + 1


def test_alias_moved_to_a_broken_version_keeps_the_old_one(
    on_version_1: Server, store: Store, bc_rows: list[list[float]]
) -> None:
    failures = loads(on_version_1, "reload", "failure")
    set_alias(store, "bc-reload", "champion", "3")
    with Load(predict_one(on_version_1, bc_rows), clients=2) as load:
        eventually(lambda: loads(on_version_1, "reload", "failure") == failures + 1)
        time.sleep(1.5)  # two more watch intervals: the broken version is not retried
    assert load.errors == []
    assert {r.status for rs in load.replies for r in rs} == {200}
    assert load.versions() == {"1"}
    assert loads(on_version_1, "reload", "failure") == failures + 1
    assert "reload failed, still serving version 1" in on_version_1.log()
    forced = on_version_1.request("POST", "/admin/reload", headers=ADMIN)
    assert forced.status == 500
    assert forced.json()["version"] == "1"
    assert forced.json()["error"].startswith("version 3 failed to load or warm up")
    assert "warm-up prediction failed" in on_version_1.log()  # the reason, in the log only
    set_alias(store, "bc-reload", "champion", "1")


def test_admin_reload_swaps_at_once(on_version_1: Server, store: Store) -> None:
    set_alias(store, "bc-reload", "champion", "2")
    reply = on_version_1.request("POST", "/admin/reload", headers=ADMIN)
    assert reply.status == 200
    assert reply.json()["version"] == "2"  # by this call, or by the watcher a moment before
    assert on_version_1.get("/v2/models/bc-reload").json()["versions"] == ["2"]


def test_registry_down_at_start_up_is_live_not_ready(tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    admin = {"MLOPS_ADMIN_TOKEN": "admin-secret"}
    server = start_server(
        down, "models:/bc-linear@champion", tmp_path, FAST_RETRY, env=admin, wait="live"
    )
    try:
        eventually(lambda: loads(server, "initial", "failure") >= 3)  # retried with backoff
        assert server.get("/v2/health/live").status == 200
        assert server.get("/v2/health/ready").status == 503
        assert server.get("/ping").status == 503
        reply = server.post("/invocations", {"instances": [[1.0] * 30]})
        assert (reply.status, reply.headers["retry-after"]) == (503, "1")
        errors = [line for line in server.log().splitlines() if " ERROR " in line]
        assert len(errors) == 1, errors  # one clear line, not one per retry
        assert "models:/bc-linear@champion" in errors[0]
        assert registry_errors(server) >= 3
        reload = server.request("POST", "/admin/reload", headers=ADMIN)
        assert reload.status == 503
        assert down not in reload.body.decode()  # the registry's address stays in the log
    finally:
        assert server.stop() == 0


def test_model_registered_after_start_up_becomes_ready(store: Store, tmp_path: Path) -> None:
    server = start_server(store.uri, "models:/bc-late@champion", tmp_path, FAST_RETRY, wait="live")
    try:
        assert server.get("/v2/health/ready").status == 503
        with using(store.uri):
            client = MlflowClient()
            source = client.get_model_version("bc-linear", "1").source
            client.create_registered_model("bc-late")
            version = client.create_model_version("bc-late", source)
            client.set_registered_model_alias("bc-late", "champion", version.version)
        server.wait_for("/v2/health/ready", timeout_s=30)
    finally:
        server.stop()


def test_sigterm_under_load_answers_every_accepted_request_and_exits_0(
    store: Store, tmp_path: Path
) -> None:
    # No drain window (serve.drain_s=0): the listener closes at once (test_overload.py drains).
    overrides = ["serve.request_timeout_s=10", "serve.drain_timeout_s=10", "serve.drain_s=0"]
    server = start_server(store.uri, "models:/generic@champion", tmp_path, overrides)
    slow = {"dataframe_records": RECORDS_GENERIC[:1], "params": {"sleep_s": 1.0}}
    quick = {"dataframe_records": RECORDS_GENERIC}
    with (
        Load(lambda: server.post("/invocations", quick), clients=4) as load,
        ThreadPoolExecutor(6) as pool,
    ):
        in_flight = [pool.submit(server.post, "/invocations", slow) for _ in range(6)]
        time.sleep(0.3)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        with pytest.raises(OSError):  # listener closed: no new connection is accepted
            server.get("/v2/health/ready")
        answered = [future.result(timeout=15) for future in in_flight]
        code = server.process.wait(timeout=15)
    assert [reply.status for reply in answered] == [200] * 6
    assert {r.status for rs in load.replies for r in rs} <= {200}
    for error in load.errors:  # only refusals of requests the server never accepted
        assert isinstance(
            error, ConnectionRefusedError | ConnectionResetError | http.client.RemoteDisconnected
        ), error
    assert code == 0
    assert re.search(r"Finished server process", server.log())
