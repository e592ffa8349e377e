"""What the processes of one tuning session share, and how the extra ones are started."""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass
from multiprocessing.context import SpawnContext

from mlops.config import Config


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
    inherit in an unknown state. A spawned worker starts a clean interpreter and imports what it
    needs (a few seconds), and behaves the same on Linux and macOS."""
    return multiprocessing.get_context("spawn")
