"""Everything one server process needs, resolved once from config, environment and command line.

Precedence: command-line flag, then environment (`HOST`, `PORT`, `MODEL_URI`), then the config
file. Tokens only come from the environment: `MLOPS_API_TOKEN` (optional, protects predictions)
and `MLOPS_ADMIN_TOKEN` (required by /admin/*; admin endpoints answer 403 without it).
`ServerSettings` is picklable: worker processes receive it as it is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from mlops.config import Config, ServeConfig
from mlops.errors import ConfigError
from mlops.serving.source import ModelSource, alias_uri, parse_source

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServerSettings:
    source: ModelSource
    host: str
    port: int
    serve: ServeConfig
    probe_port: int = 0
    api_token: str = field(default="", repr=False)
    admin_token: str = field(default="", repr=False)
    # With several workers: where each ready worker leaves a marker (see lifecycle.WorkerMarks).
    ready_dir: str = ""

    @property
    def loopback(self) -> bool:
        return self.host in _LOOPBACK


def server_settings(
    config: Config,
    environ: Mapping[str, str],
    host: str | None = None,
    port: int | None = None,
    model_uri: str | None = None,
    workers: int | None = None,
) -> ServerSettings:
    serve = config.serve
    if workers is not None:
        serve = dataclasses.replace(serve, workers=workers)
    check_serve_config(serve)
    uri = (
        model_uri
        or environ.get("MODEL_URI")
        or alias_uri(config.registered_model, serve.model_alias)
    )
    return ServerSettings(
        source=parse_source(uri, config.registered_model),
        host=host or environ.get("HOST") or serve.host,
        port=port if port is not None else _port(environ.get("PORT"), serve.port),
        probe_port=_port(environ.get("PROBE_PORT"), serve.probe_port),
        serve=serve,
        api_token=environ.get("MLOPS_API_TOKEN", ""),
        admin_token=environ.get("MLOPS_ADMIN_TOKEN", ""),
    )


def _port(text: str | None, default: int) -> int:
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"PORT must be an integer, got {text!r}") from None


def check_serve_config(serve: ServeConfig) -> None:
    """Values that would make the server misbehave are refused up front, naming the key."""
    counts = ["workers", "predict_threads", "model_threads", "max_body_bytes", "max_rows"]
    counts += ["max_batch_rows", "max_queue_depth", "max_queue_rows", "warmup_rows"]
    counts += ["max_connections"]
    for name in counts:
        if getattr(serve, name) < 1:
            raise ConfigError(f"serve.{name} must be at least 1, got {getattr(serve, name)!r}")
    timings = ["request_timeout_s", "load_retry_initial_s", "load_retry_max_s", "keep_alive_s"]
    timings += ["header_timeout_s"]
    for name in timings:
        if getattr(serve, name) <= 0:
            raise ConfigError(f"serve.{name} must be positive, got {getattr(serve, name)!r}")
    never_negative = ("max_batch_wait_ms", "reload_interval_s", "drain_timeout_s", "drain_s")
    for name in (*never_negative, "drift_window_rows"):
        if getattr(serve, name) < 0:
            raise ConfigError(f"serve.{name} must not be negative, got {getattr(serve, name)!r}")
    if not 0 < serve.port < 65536:
        raise ConfigError(f"serve.port must be in 1..65535, got {serve.port!r}")
    if not 0 <= serve.probe_port < 65536:
        raise ConfigError(f"serve.probe_port must be in 0..65535, got {serve.probe_port!r}")
    if list(serve.prediction_buckets) != sorted(serve.prediction_buckets):
        raise ConfigError("serve.prediction_buckets must be in increasing order")
