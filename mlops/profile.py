"""The data profile: per-feature statistics of the training split; the prediction profile.

Written by prepare, stored inside every logged model's metadata, and read by the model server to
validate requests (types, category sets, whether a column may be missing) and to watch drift:
numeric columns carry decile bins with the training split's share per bin, categorical columns
each category's share, both beside `missing_fraction`. The prediction profile (per model, written
by train) holds the validation split's predictions the same way: class shares or decile bins.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

QUANTILES = (0.01, 0.25, 0.5, 0.75, 0.99)
# Deciles: the usual binning for the population stability index. Fewer bins hide a shift inside a
# bin; more make the PSI of a small serving window noisy (about (bins - 1) / rows by chance alone).
BINS = 10


def build_profile(
    train: pd.DataFrame, kinds: dict[str, str], target: str, task: str
) -> dict[str, Any]:
    columns = {
        name: _numeric(train[name]) if kind == "numeric" else _categorical(train[name])
        for name, kind in kinds.items()
    }
    profile: dict[str, Any] = {"target": target, "task": task, "rows": len(train)}
    if task == "classification":
        profile["classes"] = sorted(train[target].unique().tolist())  # Python scalars: JSON-safe
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
        "bins": quantile_bins(values.to_numpy(dtype=np.float64, na_value=np.nan)),
    }


def _categorical(values: pd.Series) -> dict[str, Any]:
    counts = values.dropna().astype(str).value_counts()
    return {
        "kind": "categorical",
        "dtype": "string",
        "categories": sorted(counts.index.tolist()),
        "frequencies": {str(k): int(v) for k, v in counts.items()},
        "shares": {str(k): int(v) / len(values) for k, v in counts.items()} if len(values) else {},
        "missing_fraction": float(values.isna().mean()),
    }


def quantile_bins(values: np.ndarray) -> dict[str, list[float]]:
    """Decile edges of the present values and each bin's share of all rows (missing rows are the
    rest). A value `x` falls in bin `searchsorted(edges, x, side="right")`: the outer bins are
    open-ended. Equal edges are merged and edges at the minimum dropped, so a bin never starts
    empty by construction: a constant column is one bin."""
    present = values[~np.isnan(values)]
    if not present.size:
        return {"edges": [], "shares": [0.0]}
    edges = np.unique(np.quantile(present, np.arange(1, BINS) / BINS))
    edges = edges[edges > present.min()]
    counts = np.bincount(np.searchsorted(edges, present, side="right"), minlength=edges.size + 1)
    return {"edges": edges.tolist(), "shares": (counts / values.size).tolist()}


def prediction_profile(predictions: Any, task: str) -> dict[str, Any]:
    """How the model's predictions on the validation split are spread: each class's share for a
    classifier, decile bins for a regressor."""
    values = np.ravel(np.asarray(predictions))
    if task == "classification":
        labels, counts = np.unique(values.astype(str), return_counts=True)
        shares = {str(k): int(v) / values.size for k, v in zip(labels, counts, strict=True)}
        return {"task": task, "shares": shares}
    return {"task": task, **quantile_bins(values.astype(np.float64))}
