"""What a tuning session writes to MLflow, written by a logger process beside the workers.

Workers only run trials; they never talk to MLflow. A separate process reads the studies every
half second and writes:
- one light child run for each trial this session finished (user attribute `worker.session`):
  three calls (create, one batch, terminate) with params, the objective and every validation
  metric, the epochs a PyTorch trial ran, its state, duration and worker; nested under the
  session's parent run (tag `mlflow.parentRunId`);
- each study's summary and figures on the parent run (summary.py), as soon as the study has its
  target, while the workers go on with the next family.
So MLflow's round trips (about 20 ms of CPU a trial on SQLite) and the figures (about 0.3 s each)
are not the workers' time, and a killed worker cannot leave a run half written.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
import time
from datetime import datetime
from types import TracebackType

import mlflow
import optuna
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from optuna.trial import FrozenTrial, TrialState

from mlops.errors import TuneError
from mlops.logs import setup_logging
from mlops.tuning.session import BackgroundStart, Session, process_context
from mlops.tuning.study import FINISHED, SURPLUS_ATTR, open_storage
from mlops.tuning.summary import log_summary, summarize

log = logging.getLogger(__name__)

POLL_S = 0.5
# MLflow run statuses: a pruned trial finished normally, it was just stopped early.
_STATUS = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "FINISHED"}


class TrialLogger:
    """`with TrialLogger(session):` logs the session's trials while the block runs; leaving it
    waits for the last ones. The process starts from a thread: a cold fork server takes seconds,
    and the workers need not wait for it."""

    def __init__(self, session: Session) -> None:
        context = process_context()
        self.stop = context.Event()
        self.process = context.Process(
            target=_log_trials,
            args=(session, mlflow.get_tracking_uri(), self.stop),
            name="tune-trial-runs",
        )
        self.starting: BackgroundStart | None = None

    def __enter__(self) -> TrialLogger:
        self.starting = BackgroundStart([self.process])
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self.starting is not None, "used outside a with block"
        self.starting.join()
        self.stop.set()
        self.process.join(timeout=None if kind is None else 10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()
        if kind is None and self.process.exitcode != 0:
            raise TuneError(f"logging the trial runs failed (exit code {self.process.exitcode})")


def _log_trials(
    session: Session, tracking_uri: str, stop: multiprocessing.synchronize.Event
) -> None:
    """Entry point of the logger process: log until told to stop, then once more."""
    setup_logging()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    mlflow.set_tracking_uri(tracking_uri)
    try:
        _log_session(session, stop)
    except MlflowException as err:  # tracking server gone, say: one line, not a stack trace
        log.error("logging the trials to MLflow failed: %s", str(err.message).strip())
        sys.exit(1)


def _log_session(session: Session, stop: multiprocessing.synchronize.Event) -> None:
    storage = open_storage(session.storage_url, session.config.tune, checked=True)
    studies = [optuna.load_study(study_name=n, storage=storage) for n in session.studies.values()]
    families = {name: family for family, name in session.studies.items()}
    client = MlflowClient()
    logged: set[tuple[str, int]] = set()
    unsummarised = set(families)
    parent = multiprocessing.parent_process()
    while True:
        stopping = stop.wait(POLL_S) or (parent is not None and not parent.is_alive())
        for study in studies:
            name, trials = study.study_name, study.get_trials(deepcopy=False)
            for trial in _new_trials(trials, session.id, logged, name):
                _log_run(client, session, families[name], name, trial)
                logged.add((name, trial.number))
            finished = sum(trial.state in FINISHED for trial in trials)
            if name in unsummarised and (stopping or finished >= session.target):
                summary = summarize(study, families[name], session.target)
                log_summary(str(session.parent_run_id), study, summary)
                unsummarised.remove(name)
        if stopping:
            return


def _new_trials(
    trials: list[FrozenTrial], session_id: str, logged: set[tuple[str, int]], study_name: str
) -> list[FrozenTrial]:
    return [
        trial
        for trial in trials
        if trial.state.is_finished()
        and (trial.user_attrs.get("worker") or {}).get("session") == session_id
        and not trial.user_attrs.get(SURPLUS_ATTR)
        and (study_name, trial.number) not in logged
    ]


def _log_run(
    client: MlflowClient, session: Session, family: str, study_name: str, trial: FrozenTrial
) -> None:
    run = client.create_run(
        str(session.experiment_id),
        start_time=_ms(trial.datetime_start),
        tags=_tags(session, family, study_name, trial),
        run_name=f"{family}-trial-{trial.number}",
    )
    end = _ms(trial.datetime_complete)
    client.log_batch(
        run.info.run_id,
        metrics=_metrics(trial, end),
        params=[Param(f"{family}.{k}", str(v)) for k, v in trial.params.items()],
    )
    client.set_terminated(run.info.run_id, _STATUS.get(trial.state, "FAILED"), end_time=end)


def _tags(session: Session, family: str, study_name: str, trial: FrozenTrial) -> dict[str, str]:
    worker = trial.user_attrs.get("worker") or {}
    tags = {
        "mlflow.parentRunId": str(session.parent_run_id),
        "mlops.step": "tune",
        "mlops.family": family,
        "mlops.study": study_name,
        "mlops.trial": str(trial.number),
        "mlops.trial_state": trial.state.name,
        "mlops.pruned": str(trial.state == TrialState.PRUNED).lower(),
        "mlops.worker": f"{worker.get('host')}:{worker.get('pid')}",
    }
    retried = trial.system_attrs.get("failed_trial")
    if retried is not None:
        tags["mlops.retry_of_trial"] = str(retried)
    return tags


def _metrics(trial: FrozenTrial, now: int) -> list[Metric]:
    seconds = trial.duration.total_seconds() if trial.duration else 0.0
    metrics = [Metric("duration_s", seconds, now, 0)]
    if trial.value is not None:
        # The study's value: validation <metric>; for a pruned trial, its last epoch's.
        metrics.append(Metric("objective", trial.value, now, 0))
    for name, value in trial.user_attrs.get("validation", {}).items():
        metrics.append(Metric(f"validation_{name}", value, now, 0))
    if trial.intermediate_values:
        # The per-epoch values stay in the study (plotted on the session's run): one metric
        # value per epoch here would double what logging a trial costs.
        metrics.append(Metric("epochs", len(trial.intermediate_values), now, 0))
    return metrics


def _ms(moment: datetime | None) -> int:
    return int((moment.timestamp() if moment else time.time()) * 1000)
