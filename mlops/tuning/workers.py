"""Running trials: the loop of one worker, N worker processes on one study, the progress line.

A worker takes the families in order and runs one trial at a time in the first study that may
still start one (see `Counts.can_start`); when every unfinished study is only waiting for trials
that other workers run, it fails stale trials (dead workers) and polls. It stops when every study
has its target or the session's deadline has passed; a trial in progress always finishes.

`make tune WORKERS=N` runs N workers: the calling process and N - 1 child processes (real OS
processes: a killed one takes only its own trial down). Each fits on one thread
(`trial_threads`), so N workers use N cores without fighting over them. One worker alone is
reproducible from the seed.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TextIO

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.trial import TrialState
from threadpoolctl import threadpool_limits

from mlops.errors import MLOpsError
from mlops.logs import setup_logging
from mlops.models.torch_mlp import torch_thread_limit
from mlops.tuning.objective import Objective, SurplusTrial
from mlops.tuning.session import BackgroundStart, Session, process_context
from mlops.tuning.study import FINISHED, count_trials, open_storage, open_study

log = logging.getLogger(__name__)

POLL_S = 0.2  # how often a worker with nothing to start looks again
EXIT_WORKER_ERROR = 1


def work(session: Session, worker: int = 0, after_trial: Callable[[], None] | None = None) -> None:
    """Run trials until every study has `session.target` finished ones or the deadline passes."""
    storage = open_storage(session.storage_url, session.config.tune, checked=True)
    studies = {
        family: open_study(storage, name, session.config, worker)
        for family, name in session.studies.items()
    }
    pending = list(studies)
    while pending and (session.deadline is None or time.time() < session.deadline):
        family = _next_family(studies, pending, session.target)
        if family is None:
            _fail_stale(studies[f] for f in pending)
            time.sleep(POLL_S)
            continue
        objective = Objective(session.config, family, session.inputs, session.target, session.id)
        studies[family].optimize(objective, n_trials=1, catch=(SurplusTrial,))
        if after_trial is not None:
            after_trial()


def _next_family(studies: dict[str, optuna.Study], pending: list[str], target: int) -> str | None:
    for family in list(pending):
        counts = count_trials(studies[family])
        if counts.finished >= target:
            pending.remove(family)
        elif counts.can_start(target):
            return family
    return None


def _fail_stale(studies: Iterable[optuna.Study]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        for study in studies:
            optuna.storages.fail_stale_trials(study)


def run_workers(session: Session, workers: int, progress: Progress) -> list[int | None]:
    """Run the session with `workers` workers: this process plus workers - 1 child processes.

    Returns the exit codes of the child processes (0 for this one). Every worker fits on one
    thread (`trial_threads`): trials, not threads inside a trial, are what runs in parallel.
    """
    if workers == 1:
        with trial_threads(1):
            work(session, 0, after_trial=progress.update)
        progress.update(force=True)
        return [0]
    context = process_context()
    processes = [
        context.Process(target=_worker_main, args=(session, i), name=f"tune-worker-{i}")
        for i in range(1, workers)
    ]
    starting = BackgroundStart(processes)
    try:
        with trial_threads(1):
            work(session, 0, after_trial=progress.update)
        starting.join()
        while alive := [process.sentinel for process in processes if process.is_alive()]:
            multiprocessing.connection.wait(alive, timeout=1.0)  # returns when one exits
            progress.update()
    finally:
        starting.thread.join()
        for process in (p for p in processes if p.pid is not None):  # started ones
            if process.is_alive():
                process.terminate()
            process.join()
    progress.update(force=True)
    return [0, *(process.exitcode for process in processes)]


@contextmanager
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
    """Entry point of a worker process."""
    setup_logging()
    logging.getLogger("mlops").setLevel(logging.WARNING)  # the first worker shows progress
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with trial_threads(1):
            work(session, worker)
    except MLOpsError as err:
        log.error("worker %d: %s", worker, err)
        sys.exit(EXIT_WORKER_ERROR)


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
            values = [
                t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None
            ]
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
