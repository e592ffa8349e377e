"""A registry with two real models for the promotion tests, built once per module.

`weak` is a one-stump random forest (fails the default thresholds), `strong` the default linear
model; both trained on the prepared bundled data and registered like train does. Each test starts
with no aliases at all (and no canary weight).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from mlops.config import Config, ForestParams, LinearParams, load_config
from mlops.data import load_prepared
from mlops.prepare import prepare
from mlops.registry import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS,
    alias_version,
    register,
    stop_canary,
)
from mlops.tracking import configure_tracking, use_experiment
from mlops.train import run_family
from tests.conftest import FAST_OVERRIDES, REPO

MODEL = "breast-cancer-classifier"


@dataclass(frozen=True)
class Registry:
    tmp: Path
    config: Config
    weak: str  # version numbers
    strong: str
    strong_uri: str
    digest: str

    def with_gates(self, **gates: object) -> Config:
        promote = dataclasses.replace(self.config.promote, **gates)
        return dataclasses.replace(self.config, promote=promote)


@pytest.fixture(scope="module")
def built_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    tmp = tmp_path_factory.mktemp("registry")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
        env.delenv("MLFLOW_REGISTRY_URI", raising=False)
        paths = [f"data.prepared_dir={tmp / 'prepared'}", f"data.raw_dir={tmp / 'raw'}"]
        config = load_config(REPO / "configs" / "default.yaml", [*paths, *FAST_OVERRIDES])
        prepare(config)
        prepared = load_prepared(config.data)
        configure_tracking()
        use_experiment(config.experiment)
        stump = ForestParams(n_estimators=1, max_depth=1, min_samples_leaf=50)
        weak = run_family(config, "random_forest", stump, prepared, run_name="weak")
        strong = run_family(config, "linear", LinearParams(), prepared, run_name="strong")
        versions = []
        for run in (weak, strong):
            tags = {"family": run.family, "data_digest": prepared.digest, "git_commit": "test"}
            versions.append(register(run.model_uri, MODEL, CHALLENGER, tags))
        yield Registry(tmp, config, *versions, strong.model_uri, prepared.digest)


@pytest.fixture
def registry(built_registry: Registry) -> Registry:
    """The module's registry with every alias removed, and MLflow pointed at it."""
    configure_tracking()
    client = MlflowClient()
    for alias in (CHALLENGER, CHAMPION, PREVIOUS):
        if alias_version(MODEL, alias) is not None:
            client.delete_registered_model_alias(MODEL, alias)
    stop_canary(MODEL)
    mlflow.set_tracking_uri(f"sqlite:///{built_registry.tmp / 'mlflow.db'}")
    return built_registry


def aliases() -> dict[str, str | None]:
    return {alias: alias_version(MODEL, alias) for alias in (CHALLENGER, CHAMPION, PREVIOUS)}


def point(alias: str, version: str) -> None:
    MlflowClient().set_registered_model_alias(MODEL, alias, version)
