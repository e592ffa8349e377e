"""The tune step: an Optuna study per family, then the best trial refit and registered.

python scripts/tune.py --config configs/default.yaml [--workers N] [--trials N] [--timeout S]

One MLflow parent run per session holds its settings and each study's summary (tuning/study.py);
the best trial over the families is refit with `train.run_family`, so it is logged exactly like
train's models, and registered as `challenger`. What goes where, resuming, several workers and
machines: docs/tuning.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import mlflow
import optuna
from mlflow import MlflowClient

from mlops.config import Config, as_dict
from mlops.data import PreparedData, load_prepared
from mlops.errors import TuneError
from mlops.evaluate import check_metric, greater_is_better
from mlops.models.families import family_params
from mlops.registry import CHALLENGER, register
from mlops.tracking import git_commit, owned_run, use_experiment
from mlops.train import FamilyRun, run_family, version_tags
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
    session = run_session(config, prepared, use_experiment(config.experiment))
    best = _best(session.summaries, config.train.selection_metric)
    if not register:
        return TuneResult(session=session, best=best, version=None, refit=None)
    version, refit = _register(config, prepared, best, str(session.parent_run_id))
    return TuneResult(session=session, best=best, version=version, refit=refit)


def run_session(config: Config, prepared: PreparedData, experiment_id: str | None) -> SessionResult:
    """Run the trials of every configured family, then summarise each study.

    With an `experiment_id`, the session is a parent run there and every trial a child run;
    without one, nothing goes to MLflow (the benchmark's untracked baseline).
    """
    url = storage_url(config.tune)
    storage = open_storage(url, config.tune)
    names: dict[str, str] = {
        f: study_name(config, f, prepared.digest) for f in config.tune.families
    }
    studies = {f: open_study(storage, n, config) for f, n in names.items()}
    deadline = time.time() + config.tune.timeout_s if config.tune.timeout_s else None
    with _session_run(config, prepared, experiment_id) as parent, quiet_optuna():
        tracking = mlflow.get_tracking_uri()
        session = Session(config, url, names, deadline, tracking, experiment_id, parent)
        try:
            exits = run_workers(session, prepared.fit_inputs(config.seed), studies)
        except KeyboardInterrupt:
            mlflow.end_run("KILLED")  # no-op when untracked
            raise TuneError("tuning interrupted; run it again to resume the studies") from None
        summaries = _summarise(session, studies, exits)
    return SessionResult(summaries, parent)


@contextlib.contextmanager
def _session_run(
    config: Config, prepared: PreparedData, experiment_id: str | None
) -> Iterator[str | None]:
    """The session's parent run (FAILED if the session raises), or None when untracked."""
    if experiment_id is None:
        yield None
        return
    tags = {"mlops.step": "tune", "mlops.data_digest": prepared.digest}
    with owned_run(experiment_id=experiment_id, run_name="tune-session", tags=tags) as run:
        tune = config.tune
        settings = ("trials", "timeout_s", "workers", "sampler", "pruner")
        mlflow.log_params({name: getattr(tune, name) for name in settings})
        mlflow.log_params(
            {
                "families": ",".join(tune.families),
                "storage": shown_url(storage_url(tune)),
                "metric": config.train.selection_metric,
                "data_digest": prepared.digest,
                "git_commit": git_commit(),
            }
        )
        mlflow.log_dict(as_dict(config), "config.yaml")
        yield str(run.info.run_id)


def _summarise(
    session: Session, studies: dict[str, optuna.Study], exits: list[int | None]
) -> dict[str, StudySummary]:
    summaries = {f: summarize(study, f, session.config.tune.trials) for f, study in studies.items()}
    if session.parent_run_id is not None:
        for family, study in studies.items():
            log_summary(study, summaries[family])
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


def _best(summaries: dict[str, StudySummary], metric: str) -> StudySummary:
    scored = [s for s in summaries.values() if s.best_value is not None]
    if not scored:
        raise TuneError("no trial completed in any study: nothing to register")
    sign = 1.0 if greater_is_better(metric) else -1.0
    return max(scored, key=lambda s: sign * float(s.best_value or 0.0))


def _register(
    config: Config, prepared: PreparedData, best: StudySummary, parent_run_id: str
) -> tuple[str, FamilyRun | None]:
    """Refit and register the best trial, unless it is registered already (then move the alias)."""
    name, params = config.registered_model, json.dumps(best.best_params, sort_keys=True)
    client, query = MlflowClient(), f"name = '{name}' and tags.study = '{best.study_name}'"
    for known in client.search_model_versions(query):
        if known.tags.get("params") == params:
            version = str(known.version)
            client.set_registered_model_alias(name, CHALLENGER, version)
            log.info("best trial already registered as %s v%s: now @%s", name, version, CHALLENGER)
            return version, None
    refit = _refit(config, prepared, best, parent_run_id)
    tags = version_tags(best.family, prepared)
    tags |= {"study": best.study_name, "trial": str(best.best_trial), "params": params}
    return register(refit.model_uri, name, CHALLENGER, tags), refit


def _refit(
    config: Config, prepared: PreparedData, best: StudySummary, parent_run_id: str
) -> FamilyRun:
    """The best trial's model, fitted and logged by train's own code, nested under the session."""
    params = trial_params(family_params(config.train, best.family), best.best_params)
    run_name = f"{best.family}-tuned-trial-{best.best_trial}"
    tags = {
        "mlops.step": "tune",
        "mlops.study": best.study_name,
        "mlops.trial": str(best.best_trial),
        "mlflow.parentRunId": parent_run_id,
    }
    with trial_threads(len(os.sched_getaffinity(0))):  # as the trial ran: the same model
        return run_family(config, best.family, params, prepared, run_name, tags)
