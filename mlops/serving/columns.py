"""A faster `ColumnTransformer.transform` for serving: the same fitted transformers, no pandas.

A ColumnTransformer's own `transform` spends most of a small request selecting DataFrame columns,
in joblib's dispatch and in checks. `ColumnsPath.transform` calls each fitted transformer's own
`transform` on its columns straight from the validated request matrix (numbers as float64,
missing strings as NaN, as the DataFrame path gives them) and stacks the outputs in the
ColumnTransformer's order. Pipelines are unrolled into their fitted steps and called in order,
as `Pipeline.transform` does, without the wrapper's per-call checks.

A transformer fitted on DataFrame columns warns on every array ("X does not have valid feature
names"); the columns are selected here by position in the fitted order, so one filter for that
message is added when a path is built: `warnings.catch_warnings` per call is not thread-safe,
and scikit-learn has no setting for it.

Only plain layouts qualify (`columns_path` returns None otherwise): columns named by string,
dense output, dropped remainder, each transformer's columns all numbers or all strings. The
model uses this path only if it predicts what the model does on the warm-up rows (model.py).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

from mlops.serving.schema import InputSchema

_FEATURE_NAMES_WARNING = "X does not have valid feature names, but .* was fitted with feature names"


@dataclass(frozen=True)
class _Part:
    steps: tuple[Any, ...]  # the fitted transformer, its Pipeline unrolled
    columns: np.ndarray  # indices into the request matrix
    numeric: bool  # cast to float64, as the DataFrame path's numeric columns are


class ColumnsPath:
    """The ColumnTransformer's parts on the request matrix, stacked, then `after`: the fitted
    steps that follow it in the model (all but the final estimator)."""

    def __init__(self, parts: list[_Part], after: tuple[Any, ...] = ()) -> None:
        self.parts = parts
        self.after = after

    def transform(self, data: np.ndarray) -> np.ndarray:
        outputs = []
        for part in self.parts:
            selected = data[:, part.columns]
            if part.numeric:  # fancy indexing copied already: no second copy of float64 rows
                typed = selected.astype(np.float64, copy=False)
            else:
                typed = _nan_for_none(selected)
            outputs.append(_chain(part.steps, typed))
        stacked = outputs[0] if len(outputs) == 1 else np.hstack(outputs)
        return _chain(self.after, stacked)


def fitted_steps(estimators: list[Any]) -> tuple[Any, ...]:
    """`estimators` with every Pipeline among them unrolled into its steps, in order, and the
    steps a Pipeline skips ("passthrough", None) left out."""
    steps: list[Any] = []
    for estimator in estimators:
        if isinstance(estimator, Pipeline):
            steps.extend(fitted_steps([step for _, step in estimator.steps]))
        elif estimator is not None and not isinstance(estimator, str):  # "passthrough"
            steps.append(estimator)
    return tuple(steps)


def _chain(steps: tuple[Any, ...], values: np.ndarray) -> np.ndarray:
    for step in steps:
        values = step.transform(values)
    return values


def _nan_for_none(values: np.ndarray) -> np.ndarray:
    """Missing strings as NaN, as a pandas column of strings holds them: scikit-learn's imputers
    see only NaN as missing in an object array, not None."""
    missing = pd.isna(values)
    if not missing.any():
        return values
    values = values.copy()
    values[missing] = np.nan
    return values


def columns_path(
    transformer: Any, schema: InputSchema, after: tuple[Any, ...] = ()
) -> ColumnsPath | None:
    """A `ColumnsPath` for a fitted ColumnTransformer with a plain layout, else None."""
    if not isinstance(transformer, ColumnTransformer) or not hasattr(transformer, "transformers_"):
        return None
    if getattr(transformer, "sparse_output_", True):
        return None
    parts = []
    for name, fitted, columns in transformer.transformers_:
        if isinstance(fitted, str) and fitted == "drop":
            continue
        named = isinstance(columns, list) and all(c in schema.index for c in columns)
        if name == "remainder" or not named or isinstance(fitted, str):
            return None  # a kept remainder or "passthrough": not the layout we handle
        if len(columns) == 0:  # the ColumnTransformer skips an empty selection too
            continue
        indices = np.array([schema.index[c] for c in columns], dtype=np.intp)
        kinds = {schema.columns[i].kind for i in indices}
        numeric = kinds <= {"number", "integer"}
        if not numeric and kinds != {"string"}:
            return None
        parts.append(_Part(fitted_steps([fitted]), indices, numeric))
    if not parts:
        return None
    warnings.filterwarnings("ignore", _FEATURE_NAMES_WARNING, UserWarning)
    return ColumnsPath(parts, after)
