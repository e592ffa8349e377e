"""The train step: fit every configured model family, log each as an MLflow run, register the best.

Each family's run holds its parameters, validation and test metrics, figures, the resolved config,
the data set (with its digest) and the model itself. The run with the best validation value of
`train.selection_metric` is registered as a new version with alias `challenger`.
"""

from __future__ import annotations

import dataclasses
import itertools
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
from mlops.models.families import FamilyParams, FitInputs, family_params, fit_family
from mlops.models.logged import log_model
from mlops.models.torch_mlp import EpochCallback, TorchMLP
from mlops.profile import prediction_profile
from mlops.provenance import git_commit
from mlops.registry import CHALLENGER, register
from mlops.tracking import configure_tracking, use_experiment

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
    configure_tracking()
    use_experiment(config.experiment)
    runs = [
        run_family(config, family, family_params(config.train, family), prepared)
        for family in config.train.families
    ]
    best = select_best(runs, config.train.selection_metric)
    version = register(
        best.model_uri, config.registered_model, CHALLENGER, _version_tags(best, prepared)
    )
    return TrainResult(runs=runs, best=best, version=version)


def fit_inputs(config: Config, prepared: PreparedData) -> FitInputs:
    return FitInputs(
        train=prepared.xy("train"),
        validation=prepared.xy("validation"),
        kinds=prepared.manifest["kinds"],
        task=config.data.task,
        seed=config.seed,
    )


def run_family(
    config: Config,
    family: str,
    params: FamilyParams,
    prepared: PreparedData,
    run_name: str | None = None,
    on_epoch: EpochCallback | None = None,
) -> FamilyRun:
    """Fit, evaluate and log one family in its own MLflow run (FAILED if anything raises)."""
    tags = {"mlops.step": "train", "mlops.family": family, "mlops.data_digest": prepared.digest}
    with mlflow.start_run(run_name=run_name or family, tags=tags) as run:
        mlflow.log_params({f"{family}.{k}": v for k, v in dataclasses.asdict(params).items()})
        mlflow.log_params({"data_digest": prepared.digest, "git_commit": git_commit()})
        mlflow.log_dict(as_dict(config), "config.yaml")
        clock = [time.perf_counter()]
        model = fit_family(family, params, fit_inputs(config, prepared), on_epoch)
        clock.append(time.perf_counter())
        scores = _log_evaluation(config, model, prepared)
        clock.append(time.perf_counter())
        metadata = _metadata(prepared, _predictions(config, model, prepared))
        info = log_model(model, family, prepared.xy("train")[0], metadata)
        clock.append(time.perf_counter())
        durations = [end - start for start, end in itertools.pairwise(clock)]
        names = ("fit_seconds", "evaluate_seconds", "log_model_seconds")
        mlflow.log_metrics(dict(zip(names, durations, strict=True)))
        log.info("%s: validation %s", family, _short(scores["validation"]))
        return FamilyRun(family, run.info.run_id, info.model_uri, **scores)


def select_best(runs: list[FamilyRun], metric: str) -> FamilyRun:
    sign = 1.0 if greater_is_better(metric) else -1.0
    return max(runs, key=lambda r: sign * r.validation[metric])


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
        history = model.history
        figures["loss_curve.png"] = plots.loss_figure(
            history.train_loss, history.validation_loss, history.best_epoch
        )
    return figures


def _predictions(config: Config, model: Any, prepared: PreparedData) -> dict[str, Any]:
    """The fitted model's own predictions on the validation split: the server's reference for
    prediction drift."""
    return prediction_profile(model.predict(prepared.xy("validation")[0]), config.data.task)


def _metadata(prepared: PreparedData, predictions: dict[str, Any]) -> dict[str, Any]:
    return {
        "data_profile": prepared.profile,
        "prediction_profile": predictions,
        "data_digest": prepared.digest,
        "git_commit": git_commit(),
    }


def _version_tags(best: FamilyRun, prepared: PreparedData) -> dict[str, str]:
    return {"family": best.family, "data_digest": prepared.digest, "git_commit": git_commit()}


def _short(values: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4f}" for k, v in values.items())
