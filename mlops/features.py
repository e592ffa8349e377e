"""Preprocessing from raw columns to model inputs, as one scikit-learn transformer.

It is fitted on the training split only and travels inside every logged model, so training and
serving cannot disagree about features. Missing values are imputed; unseen categories are ignored.
"""

from __future__ import annotations

from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def build_preprocessor(kinds: dict[str, str]) -> ColumnTransformer:
    numeric = [c for c, k in kinds.items() if k == "numeric"]
    categorical = [c for c, k in kinds.items() if k == "categorical"]
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        numeric_steps = [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
        transformers.append(("numeric", Pipeline(numeric_steps), numeric))
    if categorical:
        categorical_steps = [
            ("impute", SimpleImputer(strategy="constant", fill_value="__missing__")),
            ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
        transformers.append(("categorical", Pipeline(categorical_steps), categorical))
    # Dense float output: the PyTorch network needs it, and our data sets are small and narrow.
    return ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)
