"""The MLflow model registry: versions and aliases (`challenger`, `champion`, `previous`)."""

from __future__ import annotations

import logging

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

log = logging.getLogger(__name__)

CHALLENGER = "challenger"
CHAMPION = "champion"
PREVIOUS = "previous"
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
