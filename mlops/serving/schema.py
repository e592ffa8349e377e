"""What a served model accepts and returns, read from its MLflow signature and data profile.

The signature gives the columns, their MLflow types and whether each is required. Our pipeline's
models also carry a `data_profile` (see mlops/profile.py); from it we learn which columns saw
missing values in training (the model imputes them, so null is accepted there), the numeric ranges
and the category sets (values outside them are counted as drift, not refused: the preprocessor
ignores unseen categories). A column may be null when the signature marks it optional or the
profile saw it missing; everywhere else null and NaN are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pandas as pd

from mlops.serving.errors import ModelLoadError

ColumnKind = Literal["number", "integer", "string", "boolean", "other"]

_KINDS: dict[str, ColumnKind] = {
    "double": "number",
    "float": "number",
    "long": "integer",
    "integer": "integer",
    "string": "string",
    "boolean": "boolean",
}
# MLflow column type -> Open Inference Protocol datatype.
V2_DATATYPES = {
    "double": "FP64",
    "float": "FP32",
    "long": "INT64",
    "integer": "INT32",
    "boolean": "BOOL",
    "string": "BYTES",
    "binary": "BYTES",
    "datetime": "BYTES",
}
# numpy dtype kind + size -> Open Inference Protocol datatype, for outputs.
_NUMPY_V2 = {"b1": "BOOL", "f8": "FP64", "f4": "FP32", "f2": "FP16", "i8": "INT64", "i4": "INT32"}


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str  # MLflow type name: double, long, string, boolean, ...
    required: bool = True
    nullable: bool = False
    low: float | None = None
    high: float | None = None
    categories: frozenset[str] | None = None

    @property
    def kind(self) -> ColumnKind:
        return _KINDS.get(self.dtype, "other")

    @property
    def v2_datatype(self) -> str:
        return V2_DATATYPES.get(self.dtype, "BYTES")


@dataclass(frozen=True)
class InputSchema:
    columns: tuple[Column, ...]

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @cached_property
    def column_index(self) -> pd.Index:
        """Frame columns as an object Index: pandas 3 would make them Arrow strings, which
        scikit-learn's feature-name checks iterate slowly."""
        return pd.Index(self.names, dtype=object)

    @cached_property
    def index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    @cached_property
    def numeric(self) -> bool:
        """Every column is a number: requests decode into one float64 matrix."""
        return all(c.kind in ("number", "integer") for c in self.columns)

    @cached_property
    def integer_mask(self) -> np.ndarray:
        return np.array([c.kind == "integer" for c in self.columns], dtype=bool)

    @cached_property
    def nullable_mask(self) -> np.ndarray:
        return np.array([c.nullable for c in self.columns], dtype=bool)

    @cached_property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-column training min and max (-inf / inf where unknown), for drift counting."""
        low = [c.low if c.low is not None else -np.inf for c in self.columns]
        high = [c.high if c.high is not None else np.inf for c in self.columns]
        return np.array(low, dtype=np.float64), np.array(high, dtype=np.float64)


def input_schema(signature: Any, profile: dict[str, Any] | None, uri: str) -> InputSchema:
    """The columns a model accepts; `ModelLoadError` when it has no column-based signature."""
    schema = getattr(signature, "inputs", None)
    if schema is None:
        raise ModelLoadError(f"model {uri} has no signature: log it with `signature=`")
    if schema.is_tensor_spec() or not schema.has_input_names():
        raise ModelLoadError(f"model {uri} has a tensor signature; only named columns are served")
    described = (profile or {}).get("columns", {})
    return InputSchema(tuple(_column(spec, described.get(spec.name, {})) for spec in schema.inputs))


def _column(spec: Any, profile: dict[str, Any]) -> Column:
    categories = profile.get("categories")
    low, high = profile.get("min"), profile.get("max")
    return Column(
        name=spec.name,
        dtype=getattr(spec.type, "name", str(spec.type)),
        required=bool(spec.required),
        nullable=not spec.required or float(profile.get("missing_fraction", 0.0)) > 0.0,
        low=None if low is None else float(low),
        high=None if high is None else float(high),
        categories=frozenset(str(c) for c in categories) if categories is not None else None,
    )


def output_datatype(signature: Any, profile: dict[str, Any]) -> str:
    """The Open Inference Protocol datatype of a model's predictions."""
    classes = profile.get("classes", ())
    if classes:
        return numpy_v2_datatype(np.asarray(classes).dtype)
    outputs = getattr(signature, "outputs", None)
    if outputs is None or not outputs.inputs:
        return "FP64"
    spec = outputs.inputs[0]
    if outputs.is_tensor_spec():
        return numpy_v2_datatype(spec.type)
    return V2_DATATYPES.get(getattr(spec.type, "name", ""), "BYTES")


def numpy_v2_datatype(dtype: np.dtype[Any]) -> str:
    return _NUMPY_V2.get(f"{dtype.kind}{dtype.itemsize}", "BYTES")


def data_profile(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """The `data_profile` our pipeline stores in MLmodel metadata; empty for other models."""
    profile = (metadata or {}).get("data_profile")
    if profile is not None and not isinstance(profile, dict):
        raise ModelLoadError(f"metadata data_profile must be a mapping, got {type(profile)}")
    return profile or {}
