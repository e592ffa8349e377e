"""Running the app under uvicorn: the listening socket, worker processes, signals, exit code.

We bind the socket ourselves, as `socket(AF_INET, SOCK_STREAM, IPPROTO_TCP)` with TCP_NODELAY:
asyncio only disables Nagle's algorithm on sockets whose `proto` is IPPROTO_TCP, and the socket
uvicorn binds for `--workers N` has proto 0, so each answer waits on Nagle + delayed ACK (as
`mlflow models serve --workers 2` does). One worker runs in this process; several run under
uvicorn's own supervisor (`Multiprocess`), sharing the socket and a Prometheus multiprocess
directory. SIGTERM: readiness goes false, requests are still served for `drain_s` (guard.py),
then listeners close, in-flight requests get `drain_timeout_s`, and the process exits 0.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import resource
import signal
import socket
import tempfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from mlops.errors import ConfigError
from mlops.serving.app import create_app
from mlops.serving.guard import GuardedConfig
from mlops.serving.settings import ServerSettings

log = logging.getLogger(__name__)


def serve(settings: ServerSettings) -> int:
    """Serve until SIGTERM or SIGINT; return the exit code (0 after a graceful drain)."""
    # The server retries the registry itself, with backoff, and stays live meanwhile: one attempt
    # need not retry inside MLflow's HTTP client too (set before configure_tracking's defaults).
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    sock = bind(settings.host, settings.port)
    log.info(
        "listening on http://%s:%d with %d worker(s); model %s",
        settings.host,
        sock.getsockname()[1],
        settings.serve.workers,
        settings.source.uri,
    )
    _return_quietly_after_signals()
    _allow_open_files(settings.serve.max_connections * settings.serve.workers)
    if settings.serve.workers == 1:
        uvicorn.Server(uvicorn_config(settings)).run(sockets=[sock])
        return 0
    with metrics_directory(), tempfile.TemporaryDirectory(prefix="mlops-ready-") as ready:
        shared = dataclasses.replace(settings, ready_dir=ready)
        Multiprocess(uvicorn_config(shared), sockets=[sock]).run()
    return 0


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Inherited by every accepted connection on Linux; asyncio sets it again per connection.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {err.strerror}") from None
    sock.set_inheritable(True)
    return sock


def uvicorn_config(settings: ServerSettings) -> GuardedConfig:
    serve = settings.serve
    return GuardedConfig(
        partial(create_app, settings),  # picklable: each worker process builds its own app
        header_timeout_s=serve.header_timeout_s,
        max_connections=serve.max_connections,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=serve.workers,
        lifespan="on",
        ws="none",
        access_log=False,  # /metrics counts every request; a log line each costs throughput
        proxy_headers=False,
        server_header=False,
        log_config=log_config(),
        timeout_keep_alive=max(1, round(serve.keep_alive_s)),
        timeout_graceful_shutdown=math.ceil(serve.drain_timeout_s),
    )


def log_config() -> dict[str, Any]:
    """One format for our logs, uvicorn's and every worker's (uvicorn applies it per process)."""
    quiet = {"level": "WARNING"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": "INFO"},
        "loggers": {"mlflow": quiet, "alembic": quiet, "urllib3": quiet},
    }


def _allow_open_files(connections: int) -> None:
    """Raise the soft limit on open files towards the hard one (1,024 is a common soft limit),
    so `max_connections` is what bounds connections, not a failing accept()."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + 256  # the model's files, the registry's connections, logs
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def _return_quietly_after_signals() -> None:
    """uvicorn re-raises the signal that stopped it once it has drained; let that be a no-op
    so a SIGTERM ends in exit code 0 rather than death by signal."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)


@contextlib.contextmanager
def metrics_directory() -> Iterator[Path]:
    """PROMETHEUS_MULTIPROC_DIR for the workers: the operator's (emptied) or a temp one."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        yield Path(given)
        return
    with tempfile.TemporaryDirectory(prefix="mlops-metrics-") as folder:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
        try:
            yield Path(folder)
        finally:
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]
