"""Study names, the trial budget, and search spaces: real Optuna studies, no MLflow."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from mlops.config import Config, MLPParams, load_config
from mlops.errors import ConfigError
from mlops.tuning.objective import suggest, trial_params
from mlops.tuning.study import budget, has_target, open_storage, open_study, study_name
from tests.conftest import REPO

DIGEST = "ab" * 32


@pytest.fixture
def study() -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study()


def default(*overrides: str) -> Config:
    return load_config(REPO / "configs" / "default.yaml", list(overrides))


def test_study_name_stays_when_the_trial_count_changes_but_not_when_the_objective_does() -> None:
    name = study_name(default(), "linear", DIGEST)
    assert name == study_name(default("tune.trials=99", "tune.workers=4"), "linear", DIGEST)
    assert name != study_name(default("seed=7"), "linear", DIGEST)
    assert name != study_name(default("train.linear.max_iter=50"), "linear", DIGEST)
    assert name != study_name(default("tune.search_space.linear={}"), "linear", DIGEST)
    assert name != study_name(default(), "linear", "cd" * 32)
    assert name.startswith("mlops-breast-cancer-linear-abababab-")


def test_budget_counts_complete_and_pruned_trials_not_failed_ones(study: optuna.Study) -> None:
    tune = default("tune.trials=3").tune
    for state in (TrialState.FAIL, TrialState.PRUNED, TrialState.COMPLETE):
        trial = study.ask()
        study.tell(trial, 0.5 if state == TrialState.COMPLETE else None, state=state)
    assert not has_target(study, tune)
    study.optimize(lambda trial: 0.5, callbacks=[budget(tune)])  # no n_trials: the budget stops it
    assert has_target(study, tune)
    assert len(study.trials) == 4


def test_reopened_study_continues_and_its_sampler_does_not_replay_the_first_points(
    tmp_path: Path,
) -> None:
    config = default("tune.heartbeat_interval_s=1", "tune.grace_period_s=2")
    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}", config.tune)
    space = config.tune.search_space["linear"]
    first = open_study(storage, "s", config)
    first.optimize(lambda t: suggest(t, space)["C"], n_trials=3)
    again = open_study(storage, "s", config)
    again.optimize(lambda t: suggest(t, space)["C"], n_trials=3)
    values = [t.params["C"] for t in again.trials]
    assert len(values) == 6 and len(set(values)) == 6


def test_suggested_values_replace_only_the_searched_params() -> None:
    config = default()
    trial = optuna.create_study().ask()
    values = suggest(trial, config.tune.search_space["torch_mlp"])
    params = trial_params(config.train.torch_mlp, values)
    assert isinstance(params, MLPParams)
    assert params.hidden_units in {(32,), (64, 32), (128, 64)}
    assert params.max_epochs == config.train.torch_mlp.max_epochs
    assert dataclasses.replace(params, **{k: getattr(params, k) for k in values}) == params


@pytest.mark.parametrize(
    ("space", "named"),
    [
        ("{linear: {C: {type: float, low: 0, high: 1, log: true}}}", "linear.C"),
        ("{linear: {C: {type: float, low: 2, high: 1}}}", "linear.C"),
        ("{linear: {tol: {type: float, low: 0.1, high: 1}}}", "linear.tol"),
        ("{boosting: {C: {type: float, low: 0.1, high: 1}}}", "search_space.boosting"),
        ("{torch_mlp: {hidden_units: {type: categorical, choices: ['64-x']}}}", "hidden_units"),
        ("{torch_mlp: {dropout: {type: float, low: 0.0, high: 1.0}}}", "torch_mlp.dropout"),
        ("{random_forest: {max_depth: {type: int, low: 1.5, high: 4}}}", "max_depth"),
        ("{random_forest: {max_depth: {type: categorical}}}", "max_depth"),
    ],
)
def test_bad_search_space_is_an_error_naming_the_key(space: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        default(f"tune.search_space={space}")
