"""Shared fixtures: a temp MLflow store, small configs, a CSV with mixed types and missing values.

Everything is real: a SQLite MLflow store in a temp folder, files on disk, the library's own code.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from mlops.config import Config, load_config

REPO = Path(__file__).resolve().parents[1]

# Small but real: every family trains in about a second on the bundled data.
FAST_OVERRIDES = (
    "train.random_forest.n_estimators=20",
    "train.torch_mlp.max_epochs=30",
    "train.torch_mlp.patience=5",
)


# The longest files (`pytest --durations`), a minute or more each: `make test` hands whole files
# to its workers in collection order, and one of these started last would run alone at the end.
LONGEST_FIRST = (
    "tests/e2e/test_loop.py",
    "tests/distributed/test_pipeline_on_postgres.py",
    "tests/tune/test_workers.py",
    "tests/distributed/test_tracking_server.py",
    "tests/serving/test_overload.py",
    "tests/monitoring/test_live.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


def unmeasured(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a process that runs none of our code (an `mlflow server`, `mlflow
    models serve`): without coverage's settings, so it does not pay for line tracing (about a
    third more CPU) that would record nothing."""
    names = ("COVERAGE_PROCESS_CONFIG", "COVERAGE_PROCESS_START")
    return {k: v for k, v in (env or os.environ).items() if k not in names}


@pytest.fixture(autouse=True)
def _mlflow_environment_restored() -> Iterator[None]:
    """`mlflow.set_registry_uri` (configure_tracking, in-process scripts) writes
    MLFLOW_REGISTRY_URI into the environment: one test's store must not become the registry of a
    later test's subprocesses."""
    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved = {name: os.environ.get(name) for name in names}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh SQLite tracking + registry store; `configure_tracking()` picks it up from the env."""
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    (tmp_path / "mlruns").mkdir()
    yield from use_store(uri, monkeypatch)


def use_store(uri: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point MLflow (environment and globals) at `uri` until `monkeypatch` is undone."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # Both globals: an earlier test's in-process script may have pointed them elsewhere.
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    yield uri
    while mlflow.active_run() is not None:
        mlflow.end_run()


ConfigFactory = Callable[..., Config]


@pytest.fixture
def make_config(tmp_path: Path) -> ConfigFactory:
    """Build a config from a repo YAML with data folders inside tmp_path and extra overrides."""

    def build(*overrides: str, base: str = "default.yaml", fast: bool = True) -> Config:
        paths = (f"data.prepared_dir={tmp_path / 'prepared'}", f"data.raw_dir={tmp_path / 'raw'}")
        extra = FAST_OVERRIDES if fast else ()
        return load_config(REPO / "configs" / base, [*paths, *extra, *overrides])

    return build


def mixed_frame(rows: int = 240, seed: int = 0) -> pd.DataFrame:
    """Numeric and categorical features, missing values, and a target that depends on both."""
    rng = np.random.default_rng(seed)
    income = rng.normal(50, 15, rows)
    age = rng.integers(18, 80, rows).astype(float)
    city = rng.choice(["paris", "lyon", "nice"], rows)
    plan = rng.choice(["basic", "pro"], rows)
    score = 0.08 * (income - 50) + (city == "paris") * 1.5 - (plan == "basic") * 1.0
    churned = (score + rng.normal(0, 0.5, rows) > 0).astype(int)
    frame = pd.DataFrame(
        {"income": income, "age": age, "city": city, "plan": plan, "churned": churned}
    )
    frame.loc[rng.choice(rows, rows // 10, replace=False), "income"] = np.nan
    frame.loc[rng.choice(rows, rows // 12, replace=False), "city"] = None
    return frame


@pytest.fixture
def mixed_csv(tmp_path: Path) -> Path:
    path = tmp_path / "customers.csv"
    mixed_frame().to_csv(path, index=False)
    return path


def csv_overrides(path: Path) -> tuple[str, ...]:
    return (
        f"data.source={path}",
        "data.target=churned",
        "train.selection_metric=roc_auc",
    )
