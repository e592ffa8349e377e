"""Everything one server process needs, resolved once from config, environment and command line.

Precedence: command-line flag, then environment (`HOST`, `PORT`, `PROBE_PORT`, `GRPC_PORT`,
`MODEL_URI`), then the config file. Tokens only come from the environment: `MLOPS_API_TOKEN`
(optional, protects predictions on HTTP and gRPC) and `MLOPS_ADMIN_TOKEN` (required by /admin/*;
admin endpoints answer 403 without it).
`ServerSettings` is picklable: worker processes receive it as it is.

Which model: `models:/<name>@<alias>` is watched: the server asks the registry which version the
alias names and loads that version by number (`models:/<name>/<version>`), so a move between
asking and loading cannot mix two versions. `models:/<name>/<version>`, `runs:/...` and local
paths are served as they are and never reloaded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from mlflow import MlflowClient

from mlops.config import Config, ServeConfig
from mlops.errors import ConfigError

_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>[^/]+))$")
_RUN_URI = re.compile(r"^runs:/(?P<run_id>[^/]+)/.+$")


@dataclass(frozen=True)
class ModelSource:
    """The model URI an operator configured (never one taken from a request)."""

    uri: str
    name: str  # registered model name; the configured name for runs:/ URIs and paths
    alias: str = ""  # set for models:/<name>@<alias>: the server follows the alias
    version: str = ""  # set for models:/<name>/<version>


@dataclass(frozen=True)
class ModelRef:
    """One concrete model: the URI actually loaded and what it is."""

    uri: str
    name: str
    version: str
    alias: str = ""
    run_id: str = ""


@dataclass(frozen=True)
class ServerSettings:
    source: ModelSource
    host: str
    port: int
    serve: ServeConfig
    probe_port: int = 0
    grpc_port: int = 0
    api_token: str = field(default="", repr=False)
    admin_token: str = field(default="", repr=False)
    # With several workers: where each ready worker leaves a marker (see lifecycle.WorkerMarks).
    ready_dir: str = ""


def server_settings(
    config: Config,
    environ: Mapping[str, str],
    host: str | None = None,
    port: int | None = None,
    model_uri: str | None = None,
) -> ServerSettings:
    serve = config.serve
    alias_uri = f"models:/{config.registered_model}@{serve.model_alias}"
    uri = model_uri or environ.get("MODEL_URI") or alias_uri
    return ServerSettings(
        source=parse_source(uri, config.registered_model),
        host=host or environ.get("HOST") or serve.host,
        port=port if port is not None else _port(environ.get("PORT"), serve.port),
        probe_port=_port(environ.get("PROBE_PORT"), serve.probe_port),
        grpc_port=_port(environ.get("GRPC_PORT"), serve.grpc_port),
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


def parse_source(uri: str, default_name: str) -> ModelSource:
    if not uri:
        raise ConfigError("model URI is empty: set MODEL_URI or --model-uri")
    match = _REGISTRY_URI.match(uri)
    if match is None:
        return ModelSource(uri, default_name)
    return ModelSource(uri, match["name"], match["alias"] or "", match["version"] or "")


def resolve(source: ModelSource) -> ModelRef:
    """Ask the registry what `source` means now (blocking network or database I/O)."""
    client = MlflowClient()
    if source.alias:
        found = client.get_model_version_by_alias(source.name, source.alias)
    elif source.version:
        found = client.get_model_version(source.name, source.version)
    else:
        run = _RUN_URI.match(source.uri)
        run_id = run["run_id"] if run else ""
        return ModelRef(source.uri, source.name, run_id or "local", run_id=run_id)
    pinned = f"models:/{source.name}/{found.version}"
    return ModelRef(pinned, source.name, str(found.version), source.alias, found.run_id or "")
