"""A tuning session in-process: MLflow's run tree, the refit challenger, resuming a finished study.

One session (linear and the PyTorch MLP, 4 trials each) is run once for the module, then run
again on the same stores; the tests read what both left in MLflow, Optuna and the registry.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from mlops.config import Config, load_config
from mlops.data import load_prepared
from mlops.errors import TuneError
from mlops.prepare import prepare
from mlops.tune import TuneResult, check_finished, run_session, tune
from mlops.tuning.study import StudySummary
from tests.conftest import FAST_OVERRIDES, REPO
from tests.tune.conftest import TUNE_FAST, TuneConfigFactory

pytestmark = pytest.mark.slow

MODEL = "breast-cancer-classifier"


@dataclass(frozen=True)
class Tuned:
    config: Config
    storage: str
    first: TuneResult
    second: TuneResult
    versions_before_unregistered: int
    unregistered: TuneResult  # a third session, register=False
    config_tracking_uri: str


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuned]:
    tmp = tmp_path_factory.mktemp("tuned")
    storage = f"sqlite:///{tmp / 'optuna.db'}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
        env.delenv("MLFLOW_REGISTRY_URI", raising=False)
        env.setenv("OPTUNA_STORAGE", storage)
        paths = (f"data.prepared_dir={tmp / 'prepared'}", f"data.raw_dir={tmp / 'raw'}")
        overrides = [*paths, *FAST_OVERRIDES, *TUNE_FAST, "tune.families=[linear, torch_mlp]"]
        config = load_config(REPO / "configs" / "default.yaml", overrides)
        prepare(config)
        first = tune(config)
        second = tune(config)
        mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
        versions = len(MlflowClient().search_model_versions(f"name = '{MODEL}'"))
        unregistered = tune(config, register=False)
        uri = f"sqlite:///{tmp / 'mlflow.db'}"
        yield Tuned(config, storage, first, second, versions, unregistered, uri)


def runs(**tags: str) -> pd.DataFrame:
    where = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    return mlflow.search_runs(experiment_names=["breast-cancer"], filter_string=where)


def test_each_trial_is_a_finished_child_run_of_the_session(tuned: Tuned) -> None:
    parent = tuned.first.session.parent_run_id
    children = runs(**{"mlflow.parentRunId": str(parent)})
    trials = children[children["tags.mlops.trial_state"].notna()]
    assert sorted(trials["tags.mlops.family"].value_counts().items()) == [
        ("linear", 4),
        ("torch_mlp", 4),
    ]
    assert set(trials["status"]) == {"FINISHED"}
    assert set(trials["tags.mlops.trial_state"]) <= {"COMPLETE", "PRUNED"}
    assert (trials["metrics.duration_s"] > 0).all()
    assert trials["params.linear.C"].notna().sum() == 4


def test_pytorch_trials_report_the_metric_every_epoch(tuned: Tuned) -> None:
    study = optuna.load_study(
        study_name=tuned.first.session.summaries["torch_mlp"].study_name, storage=tuned.storage
    )
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert complete and all(len(t.intermediate_values) == 15 for t in complete)
    mlp = runs(**{"mlops.family": "torch_mlp", "mlops.trial_state": "COMPLETE"}).iloc[0]
    assert mlp["metrics.epochs"] == 15


def test_session_run_holds_each_study_summary_and_plots(tuned: Tuned) -> None:
    client = MlflowClient()
    run = client.get_run(str(tuned.first.session.parent_run_id))
    assert run.data.tags["mlops.step"] == "tune"
    assert run.data.params["trials"] == "4"
    expected = {
        "linear": {"optimization_history"},  # one setting searched: nothing to compare
        "torch_mlp": {
            "optimization_history",
            "parallel_coordinate",
            "param_importances",
            "intermediate_values",
        },
    }
    for family, names in expected.items():
        assert run.data.metrics[f"{family}.trials_complete"] >= 1
        assert f"{family}.best_value" in run.data.metrics
        assert any(k.startswith(f"{family}.importance.") for k in run.data.metrics)
        plots = {a.path for a in client.list_artifacts(run.info.run_id, f"{family}/plots")}
        assert plots == {f"{family}/plots/{name}.png" for name in names}
        assert run.data.params[f"{family}.best_trial"] != "None"


def test_best_trial_is_refit_like_train_nested_and_registered_as_challenger(tuned: Tuned) -> None:
    result, client = tuned.first, MlflowClient()
    assert result.refit is not None
    refit = client.get_run(result.refit.run_id)
    assert refit.data.tags["mlflow.parentRunId"] == result.session.parent_run_id
    assert refit.data.tags["mlops.step"] == "tune"
    assert refit.data.metrics["validation_roc_auc"] == pytest.approx(result.best.best_value)
    plots = {a.path for a in client.list_artifacts(refit.info.run_id, "plots")}
    assert "plots/roc_curve.png" in plots
    version = client.get_model_version_by_alias(MODEL, "challenger")
    assert str(version.version) == result.version
    digest = load_prepared(tuned.config.data).digest
    assert version.tags["data_digest"] == digest
    assert version.tags["family"] == result.best.family
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@challenger")
    features, _ = load_prepared(tuned.config.data).xy("test")
    assert len(model.predict(features.head(3))) == 3


def test_running_a_finished_study_again_adds_no_trial_and_reuses_the_version(tuned: Tuned) -> None:
    for family, summary in tuned.second.session.summaries.items():
        assert summary.finished == 4, family
        assert summary.counts == tuned.first.session.summaries[family].counts
    assert tuned.second.refit is None
    assert tuned.second.version == tuned.first.version
    children = runs(**{"mlflow.parentRunId": str(tuned.second.session.parent_run_id)})
    assert children.empty


def test_one_worker_with_a_seed_runs_the_same_trials_again(
    mlflow_store: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tune_config: TuneConfigFactory,
) -> None:
    config = tune_config("tune.families=[linear, random_forest]")
    prepared = load_prepared(config.data)
    trials = []
    for name in ("a", "b"):
        url = f"sqlite:///{tmp_path / name}.db"
        monkeypatch.setenv("OPTUNA_STORAGE", url)
        run_session(config, prepared, experiment_id=None)
        trials.append(
            [
                (t.params, t.value)
                for study in (
                    optuna.load_study(study_name=n, storage=url)
                    for n in optuna.get_all_study_names(url)
                )
                for t in study.trials
            ]
        )
    assert trials[0] == trials[1]
    assert len(trials[0]) == 8


def test_timeout_stops_starting_trials(tune_config: TuneConfigFactory) -> None:
    config = tune_config("tune.families=[torch_mlp]", "tune.trials=50", "tune.timeout_s=3")
    result = run_session(config, load_prepared(config.data), experiment_id=None)
    summary = result.summaries["torch_mlp"]
    assert 1 <= summary.finished < 50
    assert not result.complete
    assert summary.counts.get(TrialState.RUNNING.name, 0) == 0


def test_studies_short_of_their_target_fail_the_session_unless_the_timeout_stopped_them() -> None:
    short = StudySummary("linear", "s", 4, {"COMPLETE": 2}, 0.9, 1, {}, {})
    with pytest.raises(TuneError, match=r"exit codes \[0, -9\].*linear.*2/4"):
        check_finished({"linear": short}, [0, -9], deadline=None)
    check_finished({"linear": short}, [0, -9], deadline=0.0)  # long past: a warning only


def test_a_session_without_register_leaves_the_registry_as_it_was(tuned: Tuned) -> None:
    # The k8s tune Job's workers: trials only; the tune-register Job registers the best once.
    assert tuned.unregistered.version is None
    assert tuned.unregistered.best.best_trial == tuned.first.best.best_trial
    mlflow.set_tracking_uri(tuned.config_tracking_uri)
    mlflow.set_registry_uri(tuned.config_tracking_uri)
    versions = MlflowClient().search_model_versions(f"name = '{MODEL}'")
    assert len(versions) == tuned.versions_before_unregistered
