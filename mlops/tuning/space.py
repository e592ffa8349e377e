"""A family's search space (`tune.search_space.<family>`) as Optuna suggestions and as params.

Settings not in the search space keep their `train.<family>` value, so a trial's params are the
train params with the suggested values replaced.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import optuna

from mlops.config import SearchParam, search_value
from mlops.models.families import FamilyParams


def suggest(trial: optuna.Trial, space: dict[str, SearchParam]) -> dict[str, Any]:
    """One value per searched setting, as Optuna stores it ("64-32" rather than a tuple)."""
    return {name: _suggest_one(trial, name, param) for name, param in space.items()}


def trial_params(base: FamilyParams, values: dict[str, Any]) -> FamilyParams:
    decoded = {name: search_value(name, value) for name, value in values.items()}
    params: FamilyParams = dataclasses.replace(base, **decoded)
    return params


def _suggest_one(trial: optuna.Trial, name: str, param: SearchParam) -> Any:
    if param.type == "categorical":
        return trial.suggest_categorical(name, list(param.choices))
    # Config validation guarantees both bounds for ranges.
    low, high = float(param.low or 0.0), float(param.high or 0.0)
    if param.type == "int":
        return trial.suggest_int(name, int(low), int(high), log=param.log)
    return trial.suggest_float(name, low, high, log=param.log)
