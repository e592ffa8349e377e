"""One trial: suggest params from the family's search space, fit the family, return its metric.

The search space (`tune.search_space.<family>`) replaces only the settings it lists: the others
keep their `train.<family>` value. The PyTorch MLP reports the metric after every epoch, so the
pruner can stop a poor trial early; a trial whose loss stops being finite is pruned too. Each
trial records which worker ran it (`worker`: host and pid) and all its validation metrics
(`validation`) as user attributes.
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
from dataclasses import dataclass
from typing import Any

import optuna

from mlops.config import Config, SearchParam, search_value
from mlops.data import FitInputs
from mlops.evaluate import evaluate
from mlops.models.families import FamilyParams, family_params, fit_family
from mlops.models.torch_mlp import EpochCallback, TorchMLP


@dataclass(frozen=True)
class Objective:
    config: Config
    family: str
    inputs: FitInputs

    def __call__(self, trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": os.getpid()})
        values = suggest(trial, self.config.tune.search_space.get(self.family, {}))
        params = trial_params(family_params(self.config.train, self.family), values)
        model = fit_family(self.family, params, self.inputs, self._on_epoch(trial))
        scores = evaluate(model, *self.inputs.validation, self.inputs.task)
        trial.set_user_attr("validation", scores)
        return scores[self.config.train.selection_metric]

    def _on_epoch(self, trial: optuna.Trial) -> EpochCallback:
        metric = self.config.train.selection_metric
        validation, task = self.inputs.validation, self.inputs.task

        def report(epoch: int, model: TorchMLP) -> None:
            if not math.isfinite(model.history.validation_loss[-1]):
                trial.set_user_attr("diverged", True)
                raise optuna.TrialPruned(f"validation loss is not finite at epoch {epoch}")
            value = evaluate(model, *validation, task)[metric]
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"epoch {epoch}: {metric} {value:.4f}")

        return report


def suggest(trial: optuna.Trial, space: dict[str, SearchParam]) -> dict[str, Any]:
    """One value per searched setting, as Optuna stores it ("64-32" rather than a tuple)."""
    values = {}
    for name, param in space.items():
        # Config validation guarantees both bounds for ranges, choices for categoricals.
        low, high = float(param.low or 0.0), float(param.high or 0.0)
        if param.type == "categorical":
            values[name] = trial.suggest_categorical(name, list(param.choices))
        elif param.type == "int":
            values[name] = trial.suggest_int(name, int(low), int(high), log=param.log)
        else:
            values[name] = trial.suggest_float(name, low, high, log=param.log)
    return values


def trial_params(base: FamilyParams, values: dict[str, Any]) -> FamilyParams:
    decoded = {name: search_value(name, value) for name, value in values.items()}
    params: FamilyParams = dataclasses.replace(base, **decoded)
    return params
