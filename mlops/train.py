"""The train step: fit every configured model family, log each as an MLflow run, register the best.

Each family's run holds its parameters, validation and test metrics, figures, the resolved config,
the data set (with its digest) and the model itself. The run with the best validation value of
`train.selection_metric` is registered as a new version with alias `challenger`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

import mlflow
import pandas as pd

from mlops import plots
from mlops.config import Config, as_dict
from mlops.data import PreparedData, load_prepared
from mlops.evaluate import check_metric, evaluate, greater_is_better, permutation_importance
from mlops.models.families import FamilyParams, family_params, fit_family
from mlops.models.logged import log_model
from mlops.models.torch_mlp import TorchMLP
from mlops.profile import prediction_profile
from mlops.registry import CHALLENGER, register
from mlops.tracking import git_commit, owned_run, use_experiment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FamilyRun:
    family: str
    run_id: str
    model_uri: str
    validation: dict[str, float]
    test: dict[str, float]


@dataclass(frozen=True)
class TrainResult:
    runs: list[FamilyRun]
    best: FamilyRun
    version: str


def train(config: Config) -> TrainResult:
    check_metric(config.data.task, config.train.selection_metric)
    prepared = load_prepared(config.data)
    use_experiment(config.experiment)
    runs = [
        run_family(config, family, family_params(config.train, family), prepared)
        for family in config.train.families
    ]
    sign = 1.0 if greater_is_better(config.train.selection_metric) else -1.0
    best = max(runs, key=lambda r: sign * r.validation[config.train.selection_metric])
    tags = version_tags(best.family, prepared)
    version = register(best.model_uri, config.registered_model, CHALLENGER, tags)
    return TrainResult(runs=runs, best=best, version=version)


def version_tags(family: str, prepared: PreparedData) -> dict[str, str]:
    return {"family": family, "data_digest": prepared.digest, "git_commit": git_commit()}


def run_family(
    config: Config,
    family: str,
    params: FamilyParams,
    prepared: PreparedData,
    run_name: str | None = None,
    extra_tags: dict[str, str] | None = None,
) -> FamilyRun:
    """Fit, evaluate and log one family in its own MLflow run (FAILED if anything raises)."""
    tags = {"mlops.step": "train", "mlops.family": family, "mlops.data_digest": prepared.digest}
    with owned_run(run_name=run_name or family, tags=tags | (extra_tags or {})) as run:
        mlflow.log_params({f"{family}.{k}": v for k, v in dataclasses.asdict(params).items()})
        mlflow.log_params({"data_digest": prepared.digest, "git_commit": git_commit()})
        mlflow.log_dict(as_dict(config), "config.yaml")
        started = time.perf_counter()
        model = fit_family(family, params, prepared.fit_inputs(config.seed))
        fitted = time.perf_counter()
        scores = _log_evaluation(config, model, prepared)
        evaluated = time.perf_counter()
        info = log_model(model, family, prepared.xy("train")[0], _metadata(config, model, prepared))
        mlflow.log_metrics(
            {
                "fit_seconds": fitted - started,
                "evaluate_seconds": evaluated - fitted,
                "log_model_seconds": time.perf_counter() - evaluated,
            }
        )
        shown = ", ".join(f"{k}={v:.4f}" for k, v in scores["validation"].items())
        log.info("%s: validation %s", family, shown)
        return FamilyRun(family, run.info.run_id, info.model_uri, **scores)


def _log_evaluation(
    config: Config, model: Any, prepared: PreparedData
) -> dict[str, dict[str, float]]:
    task, metric = config.data.task, config.train.selection_metric
    scores = {split: evaluate(model, *prepared.xy(split), task) for split in ("validation", "test")}
    for split, values in scores.items():
        mlflow.log_metrics({f"{split}_{k}": v for k, v in values.items()})
    features, target = prepared.xy("validation")
    figures = _figures(model, features, target, task)
    importance = permutation_importance(model, features, target, task, metric, config.seed)
    figures["feature_importance.png"] = plots.importance_figure(importance, metric)
    for name, figure in figures.items():
        mlflow.log_figure(figure, f"plots/{name}")
        plots.close(figure)
    mlflow.log_dict(importance, "feature_importance.json")
    return scores


def _figures(model: Any, features: pd.DataFrame, target: pd.Series, task: str) -> dict[str, Any]:
    if task == "classification":
        figures = plots.classification_figures(
            target, model.predict_proba(features), model.classes_
        )
    else:
        figures = {"residuals.png": plots.residuals_figure(target, model.predict(features))}
    if isinstance(model, TorchMLP):
        figures["loss_curve.png"] = plots.loss_figure(model.history)
    return figures


def _metadata(config: Config, model: Any, prepared: PreparedData) -> dict[str, Any]:
    """What the logged model carries beside itself. Its own predictions on the validation split
    are the server's reference for prediction drift."""
    predictions = model.predict(prepared.xy("validation")[0])
    return {
        "data_profile": prepared.profile,
        "prediction_profile": prediction_profile(predictions, config.data.task),
        "data_digest": prepared.digest,
        "git_commit": git_commit(),
    }
