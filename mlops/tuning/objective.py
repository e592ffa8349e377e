"""One trial: suggest params, fit the family, return its validation metric.

The PyTorch MLP reports the metric after every epoch, so the pruner can stop a poor trial early;
a trial whose loss stops being finite is pruned too. Each trial records which worker ran it
(`worker`: host and pid) and all its validation metrics (`validation`) as user attributes.
"""

from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass

import optuna

from mlops.config import Config
from mlops.evaluate import evaluate
from mlops.models.families import FitInputs, family_params, fit_family
from mlops.models.torch_mlp import EpochCallback, TorchMLP
from mlops.tuning.space import suggest, trial_params


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
