"""Fixtures for batch scoring: a real MLflow store with two registered models, input files.

The models are our pipeline's (fitted and logged with the library's own code, as the serving
tests do): a linear model on the breast-cancer columns (all numbers) and one on the mixed
customers frame (strings and missing values). The S3 and HTTP servers are the data tests'.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from mlops.config import LinearParams
from mlops.registry import register
from mlops.tracking import use_experiment
from tests.conftest import mixed_frame
from tests.data.conftest import bucket, s3_endpoint, web_root  # noqa: F401  (fixtures)
from tests.serving.conftest import breast_cancer, log_ours, using

BC_MODEL = "bc-score"
MIXED_MODEL = "mixed-score"


@dataclass(frozen=True)
class Store:
    uri: str
    root: Path


@pytest.fixture(scope="session")
def score_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    root = tmp_path_factory.mktemp("score-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    frame, target = breast_cancer()
    with using(uri):
        use_experiment("score-tests")
        register(log_ours("linear", LinearParams(), frame, target), BC_MODEL, "champion", {})
        mixed = mixed_frame()
        features, churned = mixed.drop(columns=["churned"]), mixed["churned"]
        register(log_ours("linear", LinearParams(), features, churned), MIXED_MODEL, "champion", {})
    return Store(uri, root)


def bc_rows(repeats: int = 1) -> pd.DataFrame:
    """The breast-cancer features `repeats` times over, with an `id` column in front."""
    frame = pd.concat([breast_cancer()[0]] * repeats, ignore_index=True)
    return frame.assign(id=range(len(frame)))[["id", *frame.columns]]
