"""Figures logged with every model: the ones people look at before trusting it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

TOP_FEATURES = 15


def _figure() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6, 4.5))


def classification_figures(
    target: pd.Series, proba: np.ndarray, classes: np.ndarray
) -> dict[str, Any]:
    from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay

    figures = {}
    fig, ax = _figure()
    ConfusionMatrixDisplay.from_predictions(target, classes[proba.argmax(axis=1)], ax=ax)
    figures["confusion_matrix.png"] = fig
    if len(classes) == 2:
        fig, ax = _figure()
        RocCurveDisplay.from_predictions(target, proba[:, 1], pos_label=classes[1], ax=ax)
        figures["roc_curve.png"] = fig
        fig, ax = _figure()
        PrecisionRecallDisplay.from_predictions(target, proba[:, 1], pos_label=classes[1], ax=ax)
        figures["pr_curve.png"] = fig
    return figures


def residuals_figure(target: pd.Series, predicted: np.ndarray) -> Any:
    fig, ax = _figure()
    ax.scatter(predicted, np.asarray(target) - predicted, s=10, alpha=0.6)
    ax.axhline(0.0, color="grey", linewidth=1)
    ax.set(xlabel="predicted", ylabel="residual (actual - predicted)", title="Residuals")
    return fig


def importance_figure(importance: dict[str, float], metric: str) -> Any:
    top = sorted(importance.items(), key=lambda item: item[1])[-TOP_FEATURES:]
    fig, ax = _figure()
    ax.barh([name for name, _ in top], [value for _, value in top])
    ax.set(xlabel=f"drop in {metric} when shuffled", title="Permutation importance (validation)")
    fig.tight_layout()
    return fig


def loss_figure(history: Any) -> Any:
    """A `TorchMLP`'s loss per epoch on both splits, and the epoch whose weights it kept."""
    fig, ax = _figure()
    ax.plot(history.train_loss, label="train")
    ax.plot(history.validation_loss, label="validation")
    ax.axvline(history.best_epoch, color="grey", linestyle="--", label="best epoch")
    ax.set(xlabel="epoch", ylabel="loss", title="Loss per epoch")
    ax.legend()
    return fig


def close(figure: Any) -> None:
    import matplotlib.pyplot as plt

    plt.close(figure)
