"""What the processes of one tuning session share: its description, and how they are started.

Worker processes and the trial-run logger fork from one fork server that imported the workers'
code once, never from the coordinator itself, which holds database connections and threads.
The fork server takes seconds to start (it imports scikit-learn, PyTorch, MLflow), so the
session launches it first thing (`start_fork_server`, which does not wait for those imports)
and starts processes from a background thread: the coordinator's own worker begins at once.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.forkserver
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess

from mlops.config import Config
from mlops.models.families import FitInputs

log = logging.getLogger(__name__)

# What the processes run (the trial loop; the trial-run logger and the summaries' figures), and
# what Optuna's RDB storage imports on first use (SQLAlchemy, Alembic).
FORKSERVER_PRELOAD = [
    "mlops.tuning.workers",
    "mlops.tuning.trial_runs",
    "optuna.visualization.matplotlib",
    "sqlalchemy.orm",
    "sqlalchemy.dialects.sqlite",
    "sqlalchemy.dialects.postgresql",
    "alembic.migration",
    "alembic.script",
    "optuna.storages._rdb.models",
]


@dataclass(frozen=True)
class Session:
    """One run of the tune step: sent as is to every worker and to the trial-run logger."""

    id: str  # marks the trials this session runs (user attribute `worker.session`)
    config: Config
    inputs: FitInputs
    storage_url: str
    studies: dict[str, str]  # family -> study name, in tuning order
    target: int
    deadline: float | None  # time.time() after which no trial starts
    experiment_id: str | None  # None: nothing goes to MLflow (the benchmark's baseline)
    parent_run_id: str | None


def process_context() -> ForkServerContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(FORKSERVER_PRELOAD)
    return context


def start_fork_server() -> None:
    """Launch the fork server now, from this (the main) thread; its imports run meanwhile."""
    process_context()
    multiprocessing.forkserver.ensure_running()


class BackgroundStart:
    """Starts `processes` on a thread; `join()` waits for that and re-raises a failed start."""

    def __init__(self, processes: Sequence[BaseProcess]) -> None:
        self.processes = processes
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._start, name="start-tune-processes")
        self.thread.start()

    def _start(self) -> None:
        try:
            for process in self.processes:
                _start(process)
        except BaseException as error:  # re-raised by join(), in the coordinator
            self.error = error

    def join(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise self.error


def _start(process: BaseProcess) -> None:
    try:
        process.start()
    except ConnectionRefusedError:
        # The fork server was gone: seen twice in about forty benchmark runs on a busy 2-core
        # machine, cause not found. start() notices a dead server and launches a new one.
        log.warning("the fork server for tuning processes had stopped; starting a new one")
        process.start()
