"""Probes and scrapes on a port of their own, answered by a thread: never queued behind predictions.

Under overload the event loop has more requests to parse than it can; a kubelet probe or a
Prometheus scrape waiting behind them would time out and take a healthy pod out of rotation, or
lose its metrics, exactly when they matter. `serve.probe_port` answers GET /v2/health/live,
/v2/health/ready and /metrics from a thread of each worker process: it needs the GIL for the
microseconds an answer takes, and the interpreter hands the GIL over every few milliseconds.
Each worker binds the port with SO_REUSEPORT, so the kernel spreads probes over the live ones.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from functools import partial
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from mlops.errors import ConfigError

Answer = tuple[int, bytes, str]  # status, body, content type
JSON_TYPE = "application/json"


class _ProbeHandler(BaseHTTPRequestHandler):
    timeout = 2  # seconds to send a request: a slow client cannot hold the thread
    protocol_version = "HTTP/1.0"  # one request per connection, as kubelet and Prometheus do

    def __init__(self, *args: Any, answer: Callable[[str], Answer], **kwargs: Any) -> None:
        self.answer = answer
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        status, body, content_type = self.answer(self.path)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """No access log: /metrics counts what matters."""


def start_probes(host: str, port: int, answer: Callable[[str], Answer]) -> HTTPServer:
    """Listen on host:port (shared with this server's other workers) and answer from a thread."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server = HTTPServer((host, port), partial(_ProbeHandler, answer=answer), False)
    server.socket = socket.socket(family, socket.SOCK_STREAM)
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        server.server_bind()
        server.server_activate()
    except OSError as err:
        server.server_close()
        raise ConfigError(f"cannot listen for probes on {host}:{port}: {err.strerror}") from None
    threading.Thread(target=server.serve_forever, name="probes", daemon=True).start()
    return server
