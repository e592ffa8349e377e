"""Metrics for a fitted model on a split, and which direction is better for each.

Classification: accuracy, F1 (binary: positive class = the larger label; multiclass: macro),
ROC AUC (one-vs-rest when multiclass) and log loss. Regression: RMSE, MAE and R2.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics

from mlops.errors import ConfigError

METRICS = {
    "classification": ("accuracy", "f1", "roc_auc", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})


def check_metric(task: str, name: str) -> None:
    if name not in METRICS[task]:
        raise ConfigError(f"metric {name!r} is not one of {list(METRICS[task])} for {task}")


def greater_is_better(name: str) -> bool:
    return name not in LOWER_IS_BETTER


def evaluate(model: Any, features: pd.DataFrame, target: pd.Series, task: str) -> dict[str, float]:
    if task == "regression":
        predicted = model.predict(features)
        return {
            "rmse": float(metrics.root_mean_squared_error(target, predicted)),
            "mae": float(metrics.mean_absolute_error(target, predicted)),
            "r2": float(metrics.r2_score(target, predicted)),
        }
    proba, classes = model.predict_proba(features), model.classes_
    labels = classes[proba.argmax(axis=1)]
    binary = len(classes) == 2
    average = "binary" if binary else "macro"
    f1 = metrics.f1_score(target, labels, average=average, pos_label=classes[-1])
    auc = (
        metrics.roc_auc_score(target, proba[:, 1])
        if binary
        else metrics.roc_auc_score(target, proba, multi_class="ovr", labels=classes)
    )
    return {
        "accuracy": float(metrics.accuracy_score(target, labels)),
        "f1": float(f1),
        "roc_auc": float(auc),
        "log_loss": float(metrics.log_loss(target, proba, labels=classes)),
    }


def permutation_importance(
    model: Any, features: pd.DataFrame, target: pd.Series, task: str, metric: str, seed: int
) -> dict[str, float]:
    """Drop in `metric` when one raw column is shuffled (works for every family alike)."""
    sign = 1.0 if greater_is_better(metric) else -1.0
    baseline = evaluate(model, features, target, task)[metric]
    rng = np.random.default_rng(seed)
    drops = {}
    for column in features.columns:
        shuffled = features.copy()
        shuffled[column] = rng.permutation(shuffled[column].to_numpy())
        drops[column] = sign * (baseline - evaluate(model, shuffled, target, task)[metric])
    return drops
