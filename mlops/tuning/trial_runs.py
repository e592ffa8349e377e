"""A worker's Optuna callback: one light MLflow child run for each trial it finished.

Three MLflow calls a trial (create, one batch, terminate), made by the worker that ran the trial,
nested under the session's parent run (tag `mlflow.parentRunId`): params, the objective, every
validation metric, the epochs a PyTorch trial ran, its state, duration and worker.
"""

from __future__ import annotations

import time
from datetime import datetime

import optuna
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from optuna.trial import FrozenTrial, TrialState

from mlops.tuning.session import Session

# MLflow run statuses: a pruned trial finished normally, it was just stopped early.
_STATUS = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "FINISHED"}


def log_trial_run(session: Session, family: str, study: optuna.Study, trial: FrozenTrial) -> None:
    client = MlflowClient(session.tracking_uri)
    run = client.create_run(
        str(session.experiment_id),
        start_time=_ms(trial.datetime_start),
        tags=_tags(session, family, study.study_name, trial),
        run_name=f"{family}-trial-{trial.number}",
    )
    end = _ms(trial.datetime_complete)
    client.log_batch(
        run.info.run_id,
        metrics=[Metric(k, v, end, 0) for k, v in _metrics(trial).items()],
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
        "mlops.worker": f"{worker.get('host')}:{worker.get('pid')}",
    }
    retried = trial.system_attrs.get("failed_trial")
    if retried is not None:
        tags["mlops.retry_of_trial"] = str(retried)
    return tags


def _metrics(trial: FrozenTrial) -> dict[str, float]:
    metrics = {"duration_s": trial.duration.total_seconds() if trial.duration else 0.0}
    if trial.value is not None:
        # The study's value: validation <metric>; for a pruned trial, its last epoch's.
        metrics["objective"] = trial.value
    metrics |= {f"validation_{k}": v for k, v in trial.user_attrs.get("validation", {}).items()}
    if trial.intermediate_values:
        # The per-epoch values stay in the study (plotted on the session's run): one metric
        # value per epoch here would multiply what logging a trial costs.
        metrics["epochs"] = len(trial.intermediate_values)
    return metrics


def _ms(moment: datetime | None) -> int:
    return int((moment.timestamp() if moment else time.time()) * 1000)
