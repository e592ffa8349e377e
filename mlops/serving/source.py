"""Which model to serve: the configured URI, and the registry version it points at right now.

`models:/<name>@<alias>` is watched: the server asks the registry which version the alias names
and loads that version by number (`models:/<name>/<version>`), so a move between asking and
loading cannot mix two versions. `models:/<name>/<version>`, `runs:/...` and local paths are
served as they are and never reloaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mlflow import MlflowClient

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


def parse_source(uri: str, default_name: str) -> ModelSource:
    if not uri:
        raise ConfigError("model URI is empty: set MODEL_URI or --model-uri")
    match = _REGISTRY_URI.match(uri)
    if match is None:
        return ModelSource(uri, default_name)
    return ModelSource(uri, match["name"], match["alias"] or "", match["version"] or "")


def alias_uri(name: str, alias: str) -> str:
    return f"models:/{name}@{alias}"


def resolve(source: ModelSource) -> ModelRef:
    """Ask the registry what `source` means now (blocking network or database I/O)."""
    client = MlflowClient()
    if source.alias:
        found = client.get_model_version_by_alias(source.name, source.alias)
        return _registered(source, str(found.version), found.run_id)
    if source.version:
        found = client.get_model_version(source.name, source.version)
        return _registered(source, str(found.version), found.run_id)
    run = _RUN_URI.match(source.uri)
    run_id = run["run_id"] if run else ""
    return ModelRef(source.uri, source.name, run_id or "local", run_id=run_id)


def _registered(source: ModelSource, version: str, run_id: str | None) -> ModelRef:
    pinned = f"models:/{source.name}/{version}"
    return ModelRef(pinned, source.name, version, source.alias, run_id or "")
