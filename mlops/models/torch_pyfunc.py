"""The MLflow pyfunc wrapper that serves a `TorchMLP` from raw columns.

Logged as a "model from code" (`torch_pyfunc_entry.py`), so nothing is pickled: the preprocessor
is a skops file loaded with an explicit list of trusted types, the network a `state_dict` loaded
with `torch.load(weights_only=True)`, and its shape a JSON file. See `mlops/models/logged.py`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import skops.io
import torch

from mlops.models.torch_mlp import NetworkSpec, TorchMLP, build_network

# Types in our fitted preprocessors that skops does not trust by default; both are plain data.
SKOPS_TRUSTED_TYPES = ["numpy.dtype", "sklearn.tree._tree.Tree"]
ARTIFACT_NAMES = {
    "preprocessor": "preprocessor.skops",
    "weights": "weights.pt",
    "spec": "spec.json",
}


def save_parts(model: TorchMLP, directory: Path) -> dict[str, str]:
    """Write the three parts of `model` into `directory`; return MLflow's artifacts mapping."""
    paths = {key: directory / name for key, name in ARTIFACT_NAMES.items()}
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
