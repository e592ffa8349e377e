"""Running trials: one worker's loop over the studies, N worker processes, the progress line.

A worker calls `study.optimize` on each family's study in turn until the study has its target
(study.py) or the session's deadline passes; a trial in progress always finishes. Every worker
is the same loop on the shared storage, so a worker may join or die at any time: the others
neither know nor wait.

`make tune WORKERS=N` runs N workers: the calling process and N - 1 child processes (real OS
processes: a killed one takes only its own trial down). Each fits on one thread
(`trial_threads`), so N workers use N cores without fighting over them. One worker alone is
reproducible from the seed.
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


def run_workers(session: Session, inputs: FitInputs, progress: Progress) -> list[int | None]:
    """Run `tune.workers` workers: this process and the others as child processes.

    Returns every worker's exit code (0 for this one); a child's is negative when a signal killed
    it.
    """
    context = process_context()
    children = [
        context.Process(target=_worker_main, args=(session, i), name=f"tune-worker-{i}")
        for i in range(1, session.config.tune.workers)
    ]
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
    progress.update(force=True)
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
    """Threads while fitting: `cpus` for joblib (the forest's n_jobs=-1) and for BLAS / OpenMP
    (numpy, scipy, scikit-learn), one for PyTorch. Workers use `cpus=1`.

    Why one: several workers with thread pools of their own oversubscribe the cores (two workers
    fitting logistic regressions on 2 cores took 7-34 ms a fit instead of 3-5 ms, OpenBLAS threads
    spinning), and a small tabular network gains nothing from torch's intra-op threads and loses a
    lot when cores are busy (an MLP epoch: 15-20 ms on one thread, 200-1000 ms on two on a loaded
    2-core machine). So tuning uses N cores through N workers. One torch thread also makes the
    refit of a trial repeat it bit for bit.
    """
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
    """Finished trials over the target: a bar redrawn in place on a terminal, else log lines.

    Reading the studies costs storage round trips, so it looks at most once a second.
    """

    def __init__(self, studies: dict[str, optuna.Study], target: int, stream: TextIO) -> None:
        self.studies, self.target, self.stream = studies, target, stream
        self.tty = stream.isatty()
        self.shown, self.looked = -1, -math.inf

    def update(self, force: bool = False) -> None:
        if not force and time.monotonic() - self.looked < 1.0:
            return
        self.looked = time.monotonic()
        done, best = 0, []
        for family, study in self.studies.items():
            trials = study.get_trials(deepcopy=False)
            done += min(sum(t.state in FINISHED for t in trials), self.target)
            values = [t.value for t in trials if t.state == TrialState.COMPLETE]
            if values:
                value = max(values) if study.direction.name == "MAXIMIZE" else min(values)
                best.append(f"{family} {value:.4f}")
        if done != self.shown:
            self.shown = done
            self._show(done, f" (best: {', '.join(best)})" if best else "")

    def close(self) -> None:
        if self.tty and self.shown >= 0:
            self.stream.write("\n")

    def _show(self, done: int, best: str) -> None:
        total = self.target * len(self.studies)
        text = f"tune: {done}/{total} trials finished{best}"
        if not self.tty:
            log.info("%s", text)
            return
        filled = 24 * done // max(total, 1)
        # \r: back to the line's start; ESC[K: clear what a longer line left behind.
        self.stream.write(f"\r[{'#' * filled}{'.' * (24 - filled)}] {text}\033[K")
        self.stream.flush()
