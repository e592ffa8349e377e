"""Logging a fitted model to MLflow as one self-contained, servable artifact.

scikit-learn pipelines use the `sklearn` flavor saved with skops (an explicit trusted-type list,
no pickle); the PyTorch MLP is a pyfunc model from code (see `torch_pyfunc.py`). Each carries a
signature inferred on the training rows, an input example, honest pip requirements and metadata:
data profile, data digest, family and git commit, so the model file explains itself.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import infer_signature

from mlops.models.torch_mlp import TorchMLP
from mlops.models.torch_pyfunc import SKOPS_TRUSTED_TYPES, save_parts

MODEL_NAME = "model"  # the artifact name of the model inside its run
INPUT_EXAMPLE_ROWS = 5
_PACKAGE_DIR = Path(__file__).resolve().parents[1]
# The modules a logged torch_mlp imports when loaded, copied into the model (MLflow `code_paths`).
_TORCH_MODEL_CODE = (
    "__init__.py",
    "config.py",
    "errors.py",
    "models/__init__.py",
    "models/torch_mlp.py",
    "models/torch_pyfunc.py",
)


def requirements(family: str) -> list[str]:
    """Exactly what loading the model needs (MLflow would add torch to sklearn models otherwise)."""
    names = ["mlflow", "scikit-learn", "skops", "numpy", "pandas", "scipy"]
    if family == "torch_mlp":
        names.append("torch")
    # Drop local labels such as "+cpu": pip resolves "torch==2.13.0" on every platform.
    return [f"{name}=={version(name).split('+')[0]}" for name in names]


def log_model(model: Any, family: str, features: pd.DataFrame, metadata: dict[str, Any]) -> Any:
    """Log `model` in the active run; return MLflow's `ModelInfo`."""
    with warnings.catch_warnings():
        # MLflow hints that integer outputs cannot hold missing values (predicted labels never
        # do) and about environment inference (requirements are explicit here).
        warnings.simplefilter("ignore", UserWarning)
        common = {
            "name": MODEL_NAME,
            "signature": infer_signature(features, model.predict(features)),
            "input_example": features.head(INPUT_EXAMPLE_ROWS),
            "pip_requirements": requirements(family),
            "metadata": {**metadata, "family": family},
        }
        if isinstance(model, TorchMLP):
            return _log_torch(model, common)
        return mlflow.sklearn.log_model(
            model,
            serialization_format="skops",
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
            pyfunc_predict_fn="predict",
            **common,
        )


def _log_torch(model: TorchMLP, common: dict[str, Any]) -> Any:
    with tempfile.TemporaryDirectory() as folder:
        artifacts = save_parts(model, Path(folder))
        code = _copy_model_code(Path(folder) / "code")
        return mlflow.pyfunc.log_model(
            python_model=str(_PACKAGE_DIR / "models" / "torch_pyfunc_entry.py"),
            artifacts=artifacts,
            code_paths=[str(code / "mlops")],
            **common,
        )


def _copy_model_code(destination: Path) -> Path:
    """Copy just the modules the model needs, so it loads anywhere MLflow is installed."""
    for relative in _TORCH_MODEL_CODE:
        target = destination / "mlops" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_PACKAGE_DIR / relative, target)
    return destination
