"""The tune step: an Optuna study per family, then the best trial refit and registered.

python scripts/tune.py --config configs/default.yaml [--workers N] [--trials N] [--timeout S]

One MLflow parent run per session holds its settings and each study's summary (tuning/study.py);
the best trial over the families is refit with `train.run_family`, so it is logged exactly like
train's models, and registered as `challenger`. What goes where, resuming, several workers and
machines: docs/tuning.md.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass

import mlflow
import optuna
from mlflow import MlflowClient
from mlflow.entities import Param, RunTag

from mlops.config import Config, as_dict
from mlops.data import PreparedData, load_prepared
from mlops.errors import TuneError
from mlops.evaluate import check_metric, greater_is_better
from mlops.models.families import family_params
from mlops.provenance import git_commit
from mlops.registry import CHALLENGER, register
from mlops.tracking import configure_tracking, use_experiment
from mlops.train import FamilyRun, fit_inputs, run_family
from mlops.tuning.objective import trial_params
from mlops.tuning.study import (
    StudySummary,
    log_summary,
    open_storage,
    open_study,
    shown_url,
    storage_url,
    study_name,
    summarize,
)
from mlops.tuning.workers import Session, quiet_optuna, run_workers, trial_threads

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionResult:
    summaries: dict[str, StudySummary]
    parent_run_id: str | None
    seconds: float  # the whole session
    trials_seconds: float  # from starting the workers until the last one stopped

    @property
    def complete(self) -> bool:
        return all(s.finished >= s.target for s in self.summaries.values())


@dataclass(frozen=True)
class TuneResult:
    session: SessionResult
    best: StudySummary
    version: str | None  # None: not registered (`register=False`)
    refit: FamilyRun | None  # None when this trial was registered before (version reused)


def tune(config: Config, register: bool = True) -> TuneResult:
    """Run the studies; then, if `register`, refit and register the best trial as challenger.

    Several machines on the same studies (the k8s tune Job's pods) tune with register=False and
    one process registers once they are done, so that the best trial is registered once."""
    check_metric(config.data.task, config.train.selection_metric)
    prepared = load_prepared(config.data)
    configure_tracking()
    session = run_session(config, prepared, use_experiment(config.experiment))
    best = _best(session.summaries, config.train.selection_metric)
    if not register:
        return TuneResult(session=session, best=best, version=None, refit=None)
    version, refit = _register(config, prepared, best, session.parent_run_id)
    return TuneResult(session=session, best=best, version=version, refit=refit)


def run_session(config: Config, prepared: PreparedData, experiment_id: str | None) -> SessionResult:
    """Run the trials of every configured family, then summarise each study.

    With an `experiment_id`, the session is a parent run there and every trial a child run;
    without one, nothing goes to MLflow (the benchmark's untracked baseline).
    """
    started = time.perf_counter()
    url = storage_url(config.tune)
    storage = open_storage(url, config.tune)
    names: dict[str, str] = {
        f: study_name(config, f, prepared.digest) for f in config.tune.families
    }
    studies: dict[str, optuna.Study] = {f: open_study(storage, n, config) for f, n in names.items()}
    parent = None
    if experiment_id is not None:
        parent = _start_parent_run(config, prepared, experiment_id, url)
    deadline = time.time() + config.tune.timeout_s if config.tune.timeout_s else None
    tracking = mlflow.get_tracking_uri()
    session = Session(config, url, names, deadline, tracking, experiment_id, parent)
    status = "FAILED"
    try:
        with quiet_optuna():
            trials_started = time.perf_counter()
            exits = run_workers(session, fit_inputs(config, prepared), studies)
            trials_seconds = time.perf_counter() - trials_started
            summaries = _summarise(session, studies, exits)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise TuneError("tuning interrupted; run it again to resume the studies") from None
    finally:
        if parent is not None:
            MlflowClient().set_terminated(parent, status)
    return SessionResult(summaries, parent, time.perf_counter() - started, trials_seconds)


def _summarise(
    session: Session, studies: dict[str, optuna.Study], exits: list[int | None]
) -> dict[str, StudySummary]:
    target = session.config.tune.trials
    summaries = {f: summarize(study, f, target) for f, study in studies.items()}
    if session.parent_run_id is not None:
        for family, study in studies.items():
            log_summary(session.parent_run_id, study, summaries[family])
    check_finished(summaries, exits, session.deadline)
    return summaries


def check_finished(
    summaries: dict[str, StudySummary], exits: list[int | None], deadline: float | None
) -> None:
    """Studies short of their target are an error, unless the deadline stopped them."""
    short = {f: f"{s.finished}/{s.target}" for f, s in summaries.items() if s.finished < s.target}
    if any(code != 0 for code in exits):
        log.warning("worker exit codes %s (negative: killed by that signal)", exits)
    if short and deadline is not None and time.time() >= deadline:
        log.warning("timeout: studies stopped short %s; run again to continue", short)
    elif short:
        raise TuneError(f"workers stopped (exit codes {exits}) with studies short {short}")


def _start_parent_run(config: Config, prepared: PreparedData, experiment_id: str, url: str) -> str:
    client = MlflowClient()
    tags = {"mlops.step": "tune", "mlops.data_digest": prepared.digest}
    run = client.create_run(experiment_id, tags=tags, run_name="tune-session")
    tune = config.tune
    params = {
        "families": ",".join(tune.families),
        "trials": tune.trials,
        "timeout_s": tune.timeout_s,
        "workers": tune.workers,
        "sampler": tune.sampler,
        "pruner": tune.pruner,
        "storage": shown_url(url),
        "metric": config.train.selection_metric,
        "data_digest": prepared.digest,
        "git_commit": git_commit(),
    }
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
    client.log_dict(run.info.run_id, as_dict(config), "config.yaml")
    return str(run.info.run_id)


def _best(summaries: dict[str, StudySummary], metric: str) -> StudySummary:
    scored = [s for s in summaries.values() if s.best_value is not None]
    if not scored:
        raise TuneError("no trial completed in any study: nothing to register")
    sign = 1.0 if greater_is_better(metric) else -1.0
    return max(scored, key=lambda s: sign * float(s.best_value or 0.0))


def _register(
    config: Config, prepared: PreparedData, best: StudySummary, parent_run_id: str | None
) -> tuple[str, FamilyRun | None]:
    """Refit and register the best trial, unless it is registered already (then move the alias)."""
    name = config.registered_model
    known = _registered_version(config, best)
    if known is not None:
        MlflowClient().set_registered_model_alias(name, CHALLENGER, known)
        log.info("best trial already registered as %s v%s: now @%s", name, known, CHALLENGER)
        return known, None
    refit = _refit(config, prepared, best, parent_run_id)
    tags = {
        "family": best.family,
        "data_digest": prepared.digest,
        "git_commit": git_commit(),
        "study": best.study_name,
        "trial": str(best.best_trial),
        "params": _params_tag(best),
    }
    return register(refit.model_uri, name, CHALLENGER, tags), refit


def _refit(
    config: Config, prepared: PreparedData, best: StudySummary, parent_run_id: str | None
) -> FamilyRun:
    """The best trial's model, fitted and logged by train's own code, nested under the session."""
    params = trial_params(family_params(config.train, best.family), best.best_params)
    run_name = f"{best.family}-tuned-trial-{best.best_trial}"
    with trial_threads(len(os.sched_getaffinity(0))):  # as the trial ran: the same model
        refit = run_family(config, best.family, params, prepared, run_name=run_name)
    tags = {"mlops.step": "tune", "mlops.study": best.study_name, "mlops.trial": best.best_trial}
    if parent_run_id is not None:
        tags["mlflow.parentRunId"] = parent_run_id
    MlflowClient().log_batch(refit.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
    return refit


def _registered_version(config: Config, best: StudySummary) -> str | None:
    """The version already registered from this study's best trial (same params), if any."""
    filter_string = f"name = '{config.registered_model}' and tags.study = '{best.study_name}'"
    for version in MlflowClient().search_model_versions(filter_string):
        if version.tags.get("params") == _params_tag(best):
            return str(version.version)
    return None


def _params_tag(best: StudySummary) -> str:
    return json.dumps(best.best_params, sort_keys=True)
