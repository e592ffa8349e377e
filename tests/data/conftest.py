"""Real servers for the data-source tests: an S3-compatible store (moto) and a plain HTTP server.

Both listen on 127.0.0.1 on a free port and are spoken to over HTTP by the library's own clients
(PyArrow's S3 filesystem, urllib), exactly as a real store or web server would be.
"""

from __future__ import annotations

import socket
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from moto.server import ThreadedMotoServer

AWS_VARIABLES = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_CONFIG_FILE")


@dataclass(frozen=True)
class Bucket:
    name: str
    endpoint: str

    def put(self, key: str, data: bytes) -> str:
        """Store `data` at `key` with one plain PUT; return its s3:// URI."""
        _put(f"{self.endpoint}/{self.name}/{key}", data)
        return f"s3://{self.name}/{key}"


def _put(url: str, data: bytes = b"") -> None:
    # Setting up the store goes around the code under test: a bare request, which moto accepts
    # unsigned while it does not check credentials. Without a content type, urllib sends a form
    # type and the body is taken for form fields: the object would be stored empty.
    headers = {"Content-Type": "application/octet-stream"}
    request = urllib.request.Request(url, data=data, headers=headers, method="PUT")
    with urllib.request.urlopen(request, timeout=10):
        pass


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Bucket:
    """A new, empty bucket; the AWS_* variables point at the test store, as a user sets them."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    found = Bucket(f"data-{uuid.uuid4().hex[:12]}", s3_endpoint)
    _put(f"{s3_endpoint}/{found.name}")
    return found


@pytest.fixture
def unused_port() -> int:
    """A port on 127.0.0.1 that nothing listens on: connections to it are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class _Handler(SimpleHTTPRequestHandler):
    """Files from a folder; anything under /denied/ answers 403, as a server refusing access."""

    def do_GET(self) -> None:
        if self.path.startswith("/denied/"):
            self.send_error(403, "Forbidden")
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: pytest shows failures, not every request


@pytest.fixture
def web_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on 127.0.0.1: (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()
