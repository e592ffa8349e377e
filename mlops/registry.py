"""The MLflow model registry: versions and aliases (`challenger`, `champion`, `previous`)."""

from __future__ import annotations

import logging

import mlflow
from mlflow import MlflowClient

log = logging.getLogger(__name__)

CHALLENGER = "challenger"
CHAMPION = "champion"
PREVIOUS = "previous"


def register(model_uri: str, name: str, alias: str, tags: dict[str, str]) -> str:
    """Register `model_uri` as a new version of `name`, tag it, point `alias` at it."""
    version = mlflow.register_model(model_uri, name, tags=tags).version
    MlflowClient().set_registered_model_alias(name, alias, version)
    log.info("registered %s version %s as @%s", name, version, alias)
    return str(version)
