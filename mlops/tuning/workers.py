"""Running trials: one worker's loop over the studies, N worker processes, the progress line.

Every worker is the same loop: `study.optimize` on each family's study in turn, on the shared
storage, until the study has its target (study.py) or the session's deadline passes; a trial in
progress always finishes. Workers never coordinate, so one may join (another machine) or die at
any time. `make tune WORKERS=N` runs the calling process and N - 1 child processes (a killed one
takes only its own trial down), each fitting on one thread (`trial_threads`). One worker alone
is reproducible from the seed.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from typing import TextIO

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.trial import FrozenTrial, TrialState
from threadpoolctl import threadpool_limits

from mlops.data import load_prepared
from mlops.logs import setup_logging
from mlops.models.families import FitInputs
from mlops.models.torch_mlp import torch_thread_limit
from mlops.train import fit_inputs
from mlops.tuning.objective import Objective
from mlops.tuning.session import Session, process_context
from mlops.tuning.study import FINISHED, budget, has_target, open_storage, open_study
from mlops.tuning.trial_runs import log_trial_run

log = logging.getLogger(__name__)

TrialCallback = Callable[[optuna.Study, FrozenTrial], None]


def work(
    session: Session, inputs: FitInputs, worker: int = 0, after_trial: TrialCallback | None = None
) -> None:
    """Run trials until every study has its target or the deadline passes."""
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
    cores (two workers fitting logistic regressions on 2 cores: 7-34 ms a fit instead of 3-5 ms,
    OpenBLAS threads spinning), so tuning uses N cores through N workers. One torch thread also
    makes the refit of a trial repeat it bit for bit."""
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
    inputs = fit_inputs(session.config, load_prepared(session.config.data))
    try:
        with quiet_optuna(), trial_threads(1):
            work(session, inputs, worker)
    except KeyboardInterrupt:  # Ctrl-C reaches every process of the group: the caller reports
        sys.exit(130)


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
        if done != self.shown:
            self.shown = done
            self._show(f"{done}/{self.target * len(self.studies)}", ", ".join(best))

    def _show(self, done: str, best: str) -> None:
        text = f"tune: {done} trials finished" + (f" (best: {best})" if best else "")
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
