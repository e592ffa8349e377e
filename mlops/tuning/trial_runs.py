"""One light MLflow child run per trial, written when the trial ends (an Optuna callback).

Three calls per trial (create, one batch, terminate): params, the objective and every validation
metric, the epochs a PyTorch trial ran, the trial's state and duration. The run
is nested under the session's parent run (tag `mlflow.parentRunId`), so worker processes need
no active run of their own. A killed trial leaves no run behind: its retry is logged instead.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

import optuna
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from optuna.trial import FrozenTrial, TrialState

from mlops.tuning.study import SURPLUS_ATTR

# MLflow run statuses: a pruned trial finished normally, it was just stopped early.
_STATUS = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "FINISHED"}


class TrialRecorder:
    """The Optuna callback. Runs are written on a background thread, so MLflow's round trips
    overlap the next trial instead of adding to it; leaving the `with` block waits for them and
    re-raises the first failure."""

    def __init__(
        self, experiment_id: str, parent_run_id: str, families: dict[str, str], metric: str
    ) -> None:
        self.experiment_id, self.parent_run_id, self.metric = experiment_id, parent_run_id, metric
        self.families = families  # study name -> family
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trial-runs")
        self._pending: list[Future[None]] = []

    def __enter__(self) -> TrialRecorder:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self._pool.shutdown(wait=True)
        if kind is None:  # else the error in progress is the one to report
            for future in self._pending:
                future.result()

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if not trial.user_attrs.get(SURPLUS_ATTR):
            self._pending.append(self._pool.submit(self._log, study.study_name, trial))

    def _log(self, study_name: str, trial: FrozenTrial) -> None:
        client, family = MlflowClient(), self.families[study_name]
        run = client.create_run(
            self.experiment_id,
            start_time=_ms(trial.datetime_start),
            tags=self._tags(study_name, family, trial),
            run_name=f"{family}-trial-{trial.number}",
        )
        run_id = run.info.run_id
        now = _ms(trial.datetime_complete)
        client.log_batch(
            run_id,
            metrics=self._metrics(trial, now),
            params=[Param(f"{family}.{k}", str(v)) for k, v in trial.params.items()],
        )
        client.set_terminated(run_id, _STATUS.get(trial.state, "FAILED"), end_time=now)

    def _tags(self, study_name: str, family: str, trial: FrozenTrial) -> dict[str, str]:
        retried = trial.system_attrs.get("failed_trial")
        worker = trial.user_attrs.get("worker") or {}
        tags = {
            "mlflow.parentRunId": self.parent_run_id,
            "mlops.step": "tune",
            "mlops.family": family,
            "mlops.study": study_name,
            "mlops.trial": str(trial.number),
            "mlops.trial_state": trial.state.name,
            "mlops.pruned": str(trial.state == TrialState.PRUNED).lower(),
            "mlops.worker": f"{worker.get('host')}:{worker.get('pid')}",
        }
        if retried is not None:
            tags["mlops.retry_of_trial"] = str(retried)
        return tags

    def _metrics(self, trial: FrozenTrial, now: int) -> list[Metric]:
        metrics = [Metric("duration_s", _seconds(trial), now, 0)]
        if trial.value is not None:
            # The study's value: validation <metric>; for a pruned trial, its last epoch's.
            metrics.append(Metric("objective", trial.value, now, 0))
        for name, value in trial.user_attrs.get("validation", {}).items():
            metrics.append(Metric(f"validation_{name}", value, now, 0))
        if trial.intermediate_values:
            # The per-epoch values stay in the study (plotted on the session's run): one value
            # per epoch here would double what logging a trial costs.
            metrics.append(Metric("epochs", len(trial.intermediate_values), now, 0))
        return metrics


def _ms(moment: datetime | None) -> int:
    return int((moment.timestamp() if moment else time.time()) * 1000)


def _seconds(trial: FrozenTrial) -> float:
    return trial.duration.total_seconds() if trial.duration else 0.0
