"""The MLflow model registry: versions and aliases (`challenger`, `champion`, `previous`,
`canary`), and the canary's share of traffic and mode, tags on the registered model."""

from __future__ import annotations

import logging

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlops.errors import RegistryError

log = logging.getLogger(__name__)

CHALLENGER = "challenger"
CHAMPION = "champion"
PREVIOUS = "previous"
CANARY = "canary"
# Percent of prediction requests the @canary version answers, or gets a copy of in shadow mode
# (docs/serving.md, "Canary").
CANARY_WEIGHT_TAG = "canary.weight"
CANARY_MODE_TAG = "canary.mode"
CANARY_MODES = ("split", "shadow")
# What the registry answers for a missing alias (SQL store) or a missing model.
_MISSING = frozenset({"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST"})


def register(model_uri: str, name: str, alias: str, tags: dict[str, str]) -> str:
    version = mlflow.register_model(model_uri, name, tags=tags).version
    MlflowClient().set_registered_model_alias(name, alias, version)
    log.info("registered %s version %s as @%s", name, version, alias)
    return str(version)


def alias_version(name: str, alias: str) -> str | None:
    """The version `alias` points at; None if the model or the alias does not exist."""
    try:
        return str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException as err:
        if err.error_code in _MISSING:
            return None
        raise


def start_canary(name: str, version: str, weight_percent: float, mode: str = "split") -> None:
    """Point @canary at `version` with `weight_percent` of the traffic (or change its weight or
    mode). The tags are written first: a server never sees the alias without them."""
    if not 0 <= weight_percent <= 100:
        raise RegistryError(
            f"canary weight must be between 0 and 100 percent, got {weight_percent}"
        )
    if mode not in CANARY_MODES:
        raise RegistryError(f"canary mode must be one of {', '.join(CANARY_MODES)}, got {mode!r}")
    client = MlflowClient()
    client.get_model_version(name, version)  # an unknown version: the registry's error
    if alias_version(name, CHAMPION) == version:
        raise RegistryError(f"{name} v{version} is the champion already")
    client.set_registered_model_tag(name, CANARY_WEIGHT_TAG, f"{weight_percent:g}")
    client.set_registered_model_tag(name, CANARY_MODE_TAG, mode)
    client.set_registered_model_alias(name, CANARY, version)
    log.info("%s v%s is @%s: %s, %g %% of requests", name, version, CANARY, mode, weight_percent)


def stop_canary(name: str) -> str | None:
    """Remove @canary and its tags (alias first: the servers drop it on their next check);
    return the version it named, if any."""
    version = alias_version(name, CANARY)
    client = MlflowClient()
    if version is not None:
        client.delete_registered_model_alias(name, CANARY)
    tags = client.get_registered_model(name).tags
    for tag in (CANARY_WEIGHT_TAG, CANARY_MODE_TAG):
        if tag in tags:
            client.delete_registered_model_tag(name, tag)
    log.info("%s has no @%s (was v%s)", name, CANARY, version)
    return version
