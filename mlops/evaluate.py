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

CLASSIFICATION_METRICS = ("accuracy", "f1", "roc_auc", "log_loss")
REGRESSION_METRICS = ("rmse", "mae", "r2")
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})


def metric_names(task: str) -> tuple[str, ...]:
    return CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS


def check_metric(task: str, name: str) -> None:
    if name not in metric_names(task):
        raise ConfigError(f"metric {name!r} is not one of {list(metric_names(task))} for {task}")


def greater_is_better(name: str) -> bool:
    return name not in LOWER_IS_BETTER


def evaluate(model: Any, features: pd.DataFrame, target: pd.Series, task: str) -> dict[str, float]:
    if task == "classification":
        return classification_metrics(target, model.predict_proba(features), model.classes_)
    return regression_metrics(target, model.predict(features))


def classification_metrics(
    target: pd.Series, proba: np.ndarray, classes: np.ndarray
) -> dict[str, float]:
    predicted = classes[proba.argmax(axis=1)]
    binary = len(classes) == 2
    f1 = metrics.f1_score(
        target, predicted, average="binary" if binary else "macro", pos_label=classes[-1]
    )
    auc = (
        metrics.roc_auc_score(target, proba[:, 1])
        if binary
        else metrics.roc_auc_score(target, proba, multi_class="ovr", labels=classes)
    )
    return {
        "accuracy": float(metrics.accuracy_score(target, predicted)),
        "f1": float(f1),
        "roc_auc": float(auc),
        "log_loss": float(metrics.log_loss(target, proba, labels=classes)),
    }


def regression_metrics(target: pd.Series, predicted: np.ndarray) -> dict[str, float]:
    return {
        "rmse": float(metrics.root_mean_squared_error(target, predicted)),
        "mae": float(metrics.mean_absolute_error(target, predicted)),
        "r2": float(metrics.r2_score(target, predicted)),
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
