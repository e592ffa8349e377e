"""The Spark snippet in docs/batch-scoring.md, run as it is on a local Spark session.

PySpark lives in its own environment (`make spark-venv`, .venv-spark: `make test` builds it); the
snippet runs there in a subprocess, against this session's MLflow store, and must predict what
pyfunc predicts.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO, unmeasured
from tests.score.conftest import BC_MODEL, Store, bc_rows
from tests.score.test_score import pyfunc_predictions

pytestmark = pytest.mark.slow

SPARK_PYTHON = REPO / ".venv-spark/bin/python"


def snippet() -> str:
    doc = (REPO / "docs/batch-scoring.md").read_text()
    (code,) = re.findall(r"```python\n(# spark_score\.py.*?)```", doc, re.S)
    return code


def test_the_documented_spark_udf_scores_as_pyfunc(score_store: Store, tmp_path: Path) -> None:
    assert SPARK_PYTHON.exists(), "PySpark's environment is missing: run `make spark-venv`"
    rows = bc_rows()
    rows.to_parquet(tmp_path / "in.parquet", index=False)
    (tmp_path / "spark_score.py").write_text(snippet())
    uri = f"models:/{BC_MODEL}@champion"
    env = {
        **unmeasured(),
        "MLFLOW_TRACKING_URI": score_store.uri,
        "MLFLOW_REGISTRY_URI": score_store.uri,
        "MODEL_URI": uri,
        "INPUT": str(tmp_path / "in.parquet"),
        "OUTPUT": str(tmp_path / "scored"),
        "PYSPARK_PYTHON": str(SPARK_PYTHON),  # the executors' Python, as on a cluster
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    env.pop("PYTHONPATH", None)
    ran = subprocess.run(
        [str(SPARK_PYTHON), "spark_score.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    scored = pd.read_parquet(tmp_path / "scored").sort_values("id")
    expected = pyfunc_predictions(score_store, uri, rows.drop(columns=["id"]))
    np.testing.assert_array_equal(scored["prediction"].to_numpy(), expected.astype(float))
    assert list(scored.columns) == ["id", "prediction"]
