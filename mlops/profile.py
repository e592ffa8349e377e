"""The data profile: per-feature statistics of the training split.

Written by prepare, stored inside every logged model's metadata, and read by the model server to
validate requests (types, category sets, whether a column may be missing) and to watch drift.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

QUANTILES = (0.01, 0.25, 0.5, 0.75, 0.99)


def build_profile(
    train: pd.DataFrame, kinds: dict[str, str], target: str, task: str
) -> dict[str, Any]:
    columns = {
        name: _numeric(train[name]) if kind == "numeric" else _categorical(train[name])
        for name, kind in kinds.items()
    }
    profile: dict[str, Any] = {"target": target, "task": task, "rows": len(train)}
    if task == "classification":
        profile["classes"] = sorted(_plain(v) for v in train[target].unique())
    profile["columns"] = columns
    return profile


def _numeric(values: pd.Series) -> dict[str, Any]:
    present = values.dropna()
    return {
        "kind": "numeric",
        "dtype": str(values.dtype),
        "min": float(present.min()),
        "max": float(present.max()),
        "mean": float(present.mean()),
        "std": float(present.std(ddof=0)),
        "quantiles": {str(q): float(present.quantile(q)) for q in QUANTILES},
        "missing_fraction": float(values.isna().mean()),
    }


def _categorical(values: pd.Series) -> dict[str, Any]:
    counts = values.dropna().astype(str).value_counts()
    return {
        "kind": "categorical",
        "dtype": "string",
        "categories": sorted(counts.index.tolist()),
        "frequencies": {str(k): int(v) for k, v in counts.items()},
        "missing_fraction": float(values.isna().mean()),
    }


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars, so the profile is JSON-safe."""
    return value.item() if hasattr(value, "item") else value
