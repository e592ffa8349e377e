"""Running trials: the session every worker shares, one worker's loop, N worker processes, the
MLflow child run of each trial, and the progress line.

Every worker is the same loop, `study.optimize` on each family's study in turn until it has its
target or the deadline passes; workers never coordinate, so one may join (another machine) or die
at any time. `make tune WORKERS=N` runs this process and N - 1 spawned children
(docs/tuning.md, "Several workers, several machines").
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import multiprocessing
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.context import SpawnContext
from typing import TextIO

import optuna
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from optuna.exceptions import ExperimentalWarning
from optuna.trial import FrozenTrial, TrialState
from threadpoolctl import threadpool_limits

from mlops.cli import setup_logging
from mlops.config import Config
from mlops.data import FitInputs, load_prepared
from mlops.models.torch_mlp import torch_thread_limit
from mlops.tuning.objective import Objective
from mlops.tuning.study import FINISHED, budget, has_target, open_storage, open_study

log = logging.getLogger(__name__)

TrialCallback = Callable[[optuna.Study, FrozenTrial], None]


@dataclass(frozen=True)
class Session:
    """One run of the tune step, sent as is to every worker process (small: no data in it)."""

    config: Config
    storage_url: str
    studies: dict[str, str]  # family -> study name, in tuning order
    deadline: float | None  # time.time() after which no trial starts
    tracking_uri: str
    experiment_id: str | None  # None: nothing goes to MLflow (the benchmark's baseline)
    parent_run_id: str | None


def process_context() -> SpawnContext:
    """Spawn, not fork: the calling process holds database connections (SQLAlchemy pools for
    Optuna and MLflow) and library thread pools (OpenMP, PyTorch) that a forked child would
    inherit in an unknown state; spawning also behaves the same on Linux and macOS."""
    return multiprocessing.get_context("spawn")


def work(
    session: Session, inputs: FitInputs, worker: int, after_trial: TrialCallback | None = None
) -> None:
    config = session.config
    storage = open_storage(session.storage_url, config.tune, checked=True)
    for family, name in session.studies.items():
        study = open_study(storage, name, config, worker)
        timeout_s = None if session.deadline is None else session.deadline - time.time()
        if timeout_s is not None and timeout_s <= 0:
            return
        if has_target(study, config.tune):  # a rerun never starts a trial past the target
            continue
        callbacks: list[TrialCallback] = [budget(config.tune)]
        if session.parent_run_id is not None:
            callbacks.append(functools.partial(log_trial_run, session, family))
        if after_trial is not None:
            callbacks.append(after_trial)
        study.optimize(Objective(config, family, inputs), timeout=timeout_s, callbacks=callbacks)


def run_workers(
    session: Session, inputs: FitInputs, studies: dict[str, optuna.Study]
) -> list[int | None]:
    """Run `tune.workers` workers, this process and child processes, showing their progress.

    Returns every worker's exit code (0 for this one; negative: the child was killed by that
    signal).
    """
    context = process_context()
    children = [
        context.Process(target=_worker_main, args=(session, i), name=f"tune-worker-{i}")
        for i in range(1, session.config.tune.workers)
    ]
    progress = Progress(studies, session.config.tune.trials, sys.stderr)
    try:
        for child in children:
            child.start()
        with trial_threads(1):
            work(session, inputs, 0, after_trial=lambda _study, _trial: progress.update())
        for child in children:
            while child.exitcode is None:
                child.join(timeout=1.0)
                progress.update()
    finally:
        for child in (c for c in children if c.pid is not None):
            if child.is_alive():  # this process failed or was interrupted
                child.terminate()
            child.join()
        progress.close()
    return [0, *(child.exitcode for child in children)]


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    with warnings.catch_warnings():
        # Heartbeats, stale-trial retries and the matplotlib plots are experimental in Optuna 5.
        warnings.simplefilter("ignore", ExperimentalWarning)
        previous = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress line says it all
        try:
            yield
        finally:
            optuna.logging.set_verbosity(previous)


@contextlib.contextmanager
def trial_threads(cpus: int) -> Iterator[None]:
    """Threads while fitting: `cpus` for joblib (the forest's n_jobs=-1) and BLAS / OpenMP, one
    for PyTorch. Workers use `cpus=1`: workers with thread pools of their own oversubscribe the
    cores (OpenBLAS threads spinning), so tuning uses N cores through N workers. One torch thread
    also makes the refit of a trial repeat it bit for bit."""
    saved_env = os.environ.get("LOKY_MAX_CPU_COUNT")
    os.environ["LOKY_MAX_CPU_COUNT"] = str(cpus)  # joblib reads it at each fit
    try:
        # threadpoolctl: scikit-learn's own dependency for exactly this (not pinned separately).
        with threadpool_limits(limits=cpus), torch_thread_limit(1):
            yield
    finally:
        if saved_env is None:
            os.environ.pop("LOKY_MAX_CPU_COUNT", None)
        else:
            os.environ["LOKY_MAX_CPU_COUNT"] = saved_env


def _worker_main(session: Session, worker: int) -> None:
    """Entry point of a worker process: it loads the prepared data itself (a fast local read)."""
    setup_logging()
    logging.getLogger("mlops").setLevel(logging.WARNING)  # the calling process shows progress
    inputs = load_prepared(session.config.data).fit_inputs(session.config.seed)
    try:
        with quiet_optuna(), trial_threads(1):
            work(session, inputs, worker)
    except KeyboardInterrupt:  # Ctrl-C reaches every process of the group: the caller reports
        sys.exit(130)


def log_trial_run(session: Session, family: str, study: optuna.Study, trial: FrozenTrial) -> None:
    """A trial's child run of the session's run, in three MLflow calls (docs/tuning.md)."""
    client = MlflowClient(session.tracking_uri)
    run = client.create_run(
        str(session.experiment_id),
        start_time=_ms(trial.datetime_start),
        tags=_trial_tags(session, family, study.study_name, trial),
        run_name=f"{family}-trial-{trial.number}",
    )
    end = _ms(trial.datetime_complete)
    client.log_batch(
        run.info.run_id,
        metrics=[Metric(k, v, end, 0) for k, v in _trial_metrics(trial).items()],
        params=[Param(f"{family}.{k}", str(v)) for k, v in trial.params.items()],
    )
    # A pruned trial finished normally, it was just stopped early.
    status = "FINISHED" if trial.state in FINISHED else "FAILED"
    client.set_terminated(run.info.run_id, status, end_time=end)


def _trial_tags(
    session: Session, family: str, study_name: str, trial: FrozenTrial
) -> dict[str, str]:
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


def _trial_metrics(trial: FrozenTrial) -> dict[str, float]:
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


class Progress:
    """Finished trials over the target and the best values: a line redrawn in place on a
    terminal, else log lines. It reads the studies (storage round trips) at most once a second."""

    def __init__(self, studies: dict[str, optuna.Study], target: int, stream: TextIO) -> None:
        self.studies, self.target, self.stream = studies, target, stream
        self.shown, self.looked = -1, -math.inf

    def update(self) -> None:
        if time.monotonic() - self.looked < 1.0:
            return
        self.looked, done, best = time.monotonic(), 0, []
        for family, study in self.studies.items():
            trials = study.get_trials(deepcopy=False, states=FINISHED)
            done += min(len(trials), self.target)
            if any(t.state == TrialState.COMPLETE for t in trials):
                best.append(f"{family} {study.best_value:.4f}")
        if done == self.shown:
            return
        self.shown = done
        text = f"tune: {done}/{self.target * len(self.studies)} trials finished"
        text += f" (best: {', '.join(best)})" if best else ""
        if not self.stream.isatty():
            log.info("%s", text)
            return
        # \r: back to the line's start; ESC[K: clear what a longer line left behind.
        self.stream.write(f"\r{text}\033[K")
        self.stream.flush()

    def close(self) -> None:
        self.looked = -math.inf
        self.update()  # the final count
        if self.stream.isatty() and self.shown >= 0:
            self.stream.write("\n")
