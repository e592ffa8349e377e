"""The server past its limits, over real sockets: shedding on arrival, the SIGTERM drain under
keep-alive load (a connection-pool client and wrk), slow clients, a killed worker."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.serving.conftest import RECORDS_GENERIC, Store
from tests.serving.server import Server, start_server

pytestmark = [pytest.mark.serving, pytest.mark.slow]

BC_ROW = {"instances": [[1.0] * 30]}


class KeepAliveClient(threading.Thread):
    """One persistent connection sending predictions back to back, as a client pool does: a new
    connection only when the server said `Connection: close`. Keeps statuses, whether each
    answer closed its connection, and any socket error (a reset, a refused connection)."""

    def __init__(self, port: int, body: bytes) -> None:
        super().__init__(daemon=True)
        self.port, self.body = port, body
        self.answers: list[tuple[float, int, bool]] = []  # (time, status, closed)
        self.errors: list[BaseException] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"Content-Type": "application/json"}
        while not self.stopping.is_set():
            try:
                connection.request("POST", "/invocations", self.body, headers)
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as err:
                self.errors.append(err)
                return
            closed = response.getheader("connection", "").lower() == "close"
            self.answers.append((time.monotonic(), response.status, closed))
            if closed:
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        connection.close()


@contextmanager
def keep_alive_load(port: int, body: bytes, clients: int) -> Iterator[list[KeepAliveClient]]:
    pool = [KeepAliveClient(port, body) for _ in range(clients)]
    for client in pool:
        client.start()
    try:
        yield pool
    finally:
        for client in pool:
            client.stopping.set()
        for client in pool:
            client.join(timeout=15)


def raw_request_head(port: int, content_length: int) -> socket.socket:
    """A prediction request whose headers promise a body that never comes."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    head = "POST /invocations HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    sock.sendall(f"{head}Content-Length: {content_length}\r\n\r\n".encode())
    return sock


def test_a_shed_request_is_answered_503_before_its_body_is_read(generic_server: Server) -> None:
    slow = {"dataframe_records": RECORDS_GENERIC[:1], "params": {"sleep_s": 0.2}}
    with ThreadPoolExecutor(4) as pool:  # the queue limit of this server is 4
        pending = [pool.submit(generic_server.post, "/invocations", slow) for _ in range(4)]
        time.sleep(0.1)  # all four admitted; answered within the 1 s budget even one by one
        with raw_request_head(generic_server.port, 500_000) as sock:
            started = time.perf_counter()
            answer = b"".join(iter(lambda: sock.recv(65536), b"")).decode()  # until it closes
            seconds = time.perf_counter() - started
        assert generic_server.get("/v2/health/ready").status == 200
        probes = Server(generic_server.extra["probe_port"], generic_server.process, Path())
        assert probes.get("/v2/health/ready").status == 200  # the thread's own port
        assert b"mlops_http_requests_total" in probes.get("/metrics").body
        assert [future.result().status for future in pending] == [200] * 4
    head, _, body = answer.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 503"), answer
    lines = head.lower().split("\r\n")
    assert "retry-after: 1" in lines and "connection: close" in lines, head
    assert json.loads(body)["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert seconds < 0.5  # not waiting for 500 kB that never come


def wrk(port: int, seconds: int, connections: int) -> str:
    script = 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
    script += f"wrk.body = '{json.dumps(BC_ROW)}'\n"
    lua = Path(f"/tmp/wrk-{os.getpid()}-{port}.lua")
    lua.write_text(script)
    try:
        command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(lua)]
        done = subprocess.run(
            [*command, f"http://127.0.0.1:{port}/invocations"],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=True,
        )
        return done.stdout
    finally:
        lua.unlink()


def test_sigterm_drains_keep_alive_load_without_a_failed_request(
    store: Store, tmp_path: Path
) -> None:
    assert shutil.which("wrk"), "wrk is needed (.ci/run installs it)"
    drain_s = 3.0
    overrides = [f"serve.drain_s={drain_s}", "serve.drain_timeout_s=5"]
    server = start_server(store.uri, "models:/bc-linear@champion", tmp_path, overrides)
    body = json.dumps(BC_ROW).encode()
    with (
        ThreadPoolExecutor(1) as pool,
        keep_alive_load(server.port, body, clients=4) as clients,
    ):
        load = pool.submit(wrk, server.port, 2, 16)  # ends before the drain window does
        time.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        time.sleep(0.1)
        assert server.get("/v2/health/ready").status == 503  # out of rotation at once...
        probes = Server(server.extra["probe_port"], server.process, Path())
        assert probes.get("/v2/health/ready").status == 503
        assert server.post("/invocations", BC_ROW).status == 200  # ...still serving
        wrk_output = load.result()
    code = server.process.wait(timeout=drain_s + 10)
    exited = time.monotonic()
    assert code == 0
    assert exited - signalled >= drain_s
    assert "Non-2xx" not in wrk_output and "Socket errors" not in wrk_output, wrk_output
    answers = [answer for client in clients for answer in client.answers]
    assert [client.errors for client in clients] == [[]] * 4
    assert {status for _, status, _ in answers} == {200}
    after = [closed for at, _, closed in answers if at > signalled + 0.05]
    assert after and all(after)  # every answer while draining closes its connection
    with pytest.raises(OSError):
        server.get("/v2/health/live")


def test_slow_clients_are_cut_off_and_do_not_hold_up_a_normal_one(
    store: Store, tmp_path: Path
) -> None:
    overrides = ["serve.header_timeout_s=1", "serve.max_connections=64"]
    server = start_server(store.uri, "models:/bc-linear@champion", tmp_path, overrides)
    slow = []
    try:
        for _ in range(150):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: t\r\nX-Slow: ")
            slow.append(sock)
        started = time.perf_counter()
        assert server.post("/invocations", BC_ROW).status == 200
        assert time.perf_counter() - started < 1.0
        for sock in slow[:20]:  # the oldest were closed to stay under max_connections
            assert closed_by_server(sock, wait_s=0.5)
        time.sleep(1.5)
        assert all(closed_by_server(sock, wait_s=0.5) for sock in slow)  # header timeout
    finally:
        for sock in slow:
            sock.close()
        assert server.stop() == 0


def closed_by_server(sock: socket.socket, wait_s: float) -> bool:
    sock.settimeout(wait_s)
    try:
        sock.sendall(b"x")
        return sock.recv(1024) == b""
    except TimeoutError:
        return False
    except OSError:  # reset: closed
        return True


def worker_pids(server: Server) -> list[int]:
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
    pids = [int(pid) for pid in children.read_text().split()]
    return [pid for pid in pids if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]


def test_a_killed_worker_leaves_the_pod_ready_and_serving(store: Store, tmp_path: Path) -> None:
    server = start_server(store.uri, "models:/bc-linear@champion", tmp_path, workers=2)
    try:
        time.sleep(0.5)
        (victim, *_) = worker_pids(server)
        os.kill(victim, signal.SIGKILL)
        statuses = set()
        until = time.monotonic() + 6  # the supervisor restarts it; it loads meanwhile
        while time.monotonic() < until:
            statuses.add(server.get("/v2/health/ready").status)
            statuses.add(server.post("/invocations", BC_ROW).status)
            time.sleep(0.05)
        assert statuses == {200}
        assert len(worker_pids(server)) == 2
    finally:
        assert server.stop() == 0
