"""Logging a fitted model to MLflow as one self-contained, servable artifact, and the pyfunc
wrapper that serves a logged `TorchMLP` from raw columns.

scikit-learn pipelines use the `sklearn` flavor saved with skops (an explicit trusted-type list,
no pickle). The PyTorch MLP is a pyfunc "model from code" (`torch_pyfunc_entry.py`), so nothing is
pickled either: the preprocessor is a skops file, the network a `state_dict` loaded with
`torch.load(weights_only=True)`, its shape a JSON file. Each model carries a signature inferred on
the training rows, an input example, honest pip requirements and metadata: data profile, data
digest, family and git commit, so the model file explains itself.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import skops.io
import torch
from mlflow.models import infer_signature

from mlops.models.torch_mlp import NetworkSpec, TorchMLP, build_network

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
    "models/logged.py",
)
# Types in our fitted preprocessors that skops does not trust by default; both are plain data.
SKOPS_TRUSTED_TYPES = ["numpy.dtype", "sklearn.tree._tree.Tree"]
TORCH_PARTS = {"preprocessor": "preprocessor.skops", "weights": "weights.pt", "spec": "spec.json"}


def requirements(family: str) -> list[str]:
    """Exactly what loading the model needs (MLflow would add torch to sklearn models otherwise)."""
    names = ["mlflow", "scikit-learn", "skops", "numpy", "pandas", "scipy"]
    if family == "torch_mlp":
        names.append("torch")
    # Drop local labels such as "+cpu": pip resolves "torch==2.13.0" on every platform.
    return [f"{name}=={version(name).split('+')[0]}" for name in names]


def log_model(model: Any, family: str, features: pd.DataFrame, metadata: dict[str, Any]) -> Any:
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


def save_parts(model: TorchMLP, directory: Path) -> dict[str, str]:
    paths = {key: directory / name for key, name in TORCH_PARTS.items()}
    skops.io.dump(model.preprocessor, paths["preprocessor"])
    torch.save(model.network.state_dict(), paths["weights"])
    paths["spec"].write_text(json.dumps(dataclasses.asdict(model.spec)))
    return {key: str(path) for key, path in paths.items()}


def load_parts(artifacts: dict[str, str]) -> TorchMLP:
    fields = json.loads(Path(artifacts["spec"]).read_text())
    tuples = {"hidden_units": tuple(fields["hidden_units"]), "classes": tuple(fields["classes"])}
    spec = NetworkSpec(**{**fields, **tuples})
    preprocessor = skops.io.load(artifacts["preprocessor"], trusted=SKOPS_TRUSTED_TYPES)
    network = build_network(spec)
    state = torch.load(artifacts["weights"], map_location="cpu", weights_only=True)
    network.load_state_dict(state)
    network.eval()
    return TorchMLP(preprocessor, network, spec)


# MLflow ships no type information, so its base class is Any to mypy.
class TorchTabularModel(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    """pyfunc: `predict` gives labels (classification) or values; `predict_proba` probabilities."""

    model: TorchMLP

    def load_context(self, context: Any) -> None:
        self.model = load_parts(context.artifacts)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        if (params or {}).get("predict_method") == "predict_proba":
            return self.model.predict_proba(model_input)
        return self.model.predict(model_input)

    def predict_proba(self, model_input: pd.DataFrame) -> np.ndarray:
        return self.model.predict_proba(model_input)
