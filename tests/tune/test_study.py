"""Study names, the exact trial budget, and search spaces: real Optuna studies, no MLflow."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from mlops.config import Config, MLPParams, load_config
from mlops.errors import ConfigError
from mlops.tuning.space import suggest, trial_params
from mlops.tuning.study import Counts, claims_slot, open_storage, open_study, study_name
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


def test_trial_is_surplus_when_finished_and_earlier_running_trials_fill_the_target(
    study: optuna.Study,
) -> None:
    done = study.ask()
    study.tell(done, 0.5)
    first, second = study.ask(), study.ask()
    assert claims_slot(study, first.number, target=2)
    assert not claims_slot(study, second.number, target=2)
    assert claims_slot(study, second.number, target=3)


def test_waiting_trial_with_a_smaller_number_keeps_its_slot(study: optuna.Study) -> None:
    study.enqueue_trial({})  # trial 0: queued (a retry), not yet running
    later = study.ask()  # pops trial 0 ...
    assert later.number == 0
    newer = study.ask()  # ... so this is trial 1
    study.enqueue_trial({})  # trial 2 waits
    newest = study.ask()  # pops 2
    assert newest.number == 2
    assert not claims_slot(study, newest.number, target=2)
    assert claims_slot(study, newer.number, target=2)


def test_failed_trials_free_their_slot(study: optuna.Study) -> None:
    failed = study.ask()
    study.tell(failed, state=TrialState.FAIL)
    trial = study.ask()
    assert claims_slot(study, trial.number, target=1)


def test_new_trial_may_start_only_below_the_target_or_to_run_a_queued_retry() -> None:
    assert Counts(finished=2, running=1, waiting=0).can_start(target=4)
    assert not Counts(finished=3, running=1, waiting=0).can_start(target=4)
    assert Counts(finished=3, running=1, waiting=1).can_start(target=4)
    assert not Counts(finished=4, running=0, waiting=1).can_start(target=4)


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
