"""Where studies live, what they are called, how many trials they run, and their summaries.

An Optuna RDB storage (`tune.storage`, or `OPTUNA_STORAGE` for several machines) with heartbeats,
so a dead worker's trial is failed and retried; a budget of `tune.trials` finished trials per
study; a summary of each study on the session's parent run, covering the whole study, earlier
sessions too: importances are PED-ANOVA (Optuna's default evaluator; it needs only numpy), figures
use Optuna's matplotlib backend (plotly is not a dependency). docs/tuning.md: "Where it goes in
MLflow", "Resuming", "The budget", "A killed worker".
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import warnings
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from mlops import plots
from mlops.config import Config, TuneConfig
from mlops.evaluate import greater_is_better
from mlops.models.families import family_params

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
_SQLITE = "sqlite:///"


def storage_url(tune: TuneConfig) -> str:
    return os.environ.get("OPTUNA_STORAGE") or tune.storage


def shown_url(url: str) -> str:
    """The storage URL with any password hidden, for logs and run params."""
    return str(make_url(url).render_as_string(hide_password=True))


def open_storage(url: str, tune: TuneConfig, checked: bool = False) -> RDBStorage:
    """The RDB storage at `url`, with heartbeats and retries of trials whose worker died.

    `checked`: this session opened it already, so skip creating tables and checking the schema
    version (Optuna parses its Alembic scripts for that: most of a second per worker).
    """
    if url.startswith(_SQLITE) and url != f"{_SQLITE}:memory:" and not checked:
        _prepare_sqlite(Path(url.removeprefix(_SQLITE)))
    with warnings.catch_warnings():
        # Heartbeats and the retry callback are marked experimental; we rely on them knowingly.
        warnings.simplefilter("ignore", ExperimentalWarning)
        return RDBStorage(
            url,
            # Several workers write one SQLite file: wait for the lock instead of failing at 5 s.
            # Server databases drop idle connections: check before use.
            engine_kwargs=(
                {"connect_args": {"timeout": 60}}
                if url.startswith("sqlite")
                else {"pool_pre_ping": True}
            ),
            heartbeat_interval=tune.heartbeat_interval_s,
            grace_period=tune.grace_period_s,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(tune.max_retries),
            skip_compatibility_check=checked,
            skip_table_creation=checked,
        )


def _prepare_sqlite(path: Path) -> None:
    """Create the folder; switch the file to write-ahead logging (a setting stored in the file):
    with the default rollback journal, the workers' readers block the writer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path, timeout=60)) as connection:
        connection.execute("PRAGMA journal_mode=WAL").fetchall()


def study_name(config: Config, family: str, data_digest: str) -> str:
    """Same data and same objective (family, params, space, metric, seed): same study, resumed;
    changing what a trial computes starts a new one, so no study mixes incomparable values."""
    objective = {
        "family": family,
        "task": config.data.task,
        "metric": config.train.selection_metric,
        "seed": config.seed,
        "params": asdict(family_params(config.train, family)),
        "space": {k: asdict(v) for k, v in config.tune.search_space.get(family, {}).items()},
    }
    text = json.dumps(objective, sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{config.tune.study_prefix}-{config.experiment}-{family}-{data_digest[:8]}-{digest}"


def open_study(storage: RDBStorage, name: str, config: Config, worker: int = 0) -> optuna.Study:
    """Create or load the study `name`; the sampler's seed is (seed, worker, trials so far)."""
    direction = "maximize" if greater_is_better(config.train.selection_metric) else "minimize"
    study = optuna.create_study(
        storage=storage, study_name=name, direction=direction, load_if_exists=True
    )
    # A resumed study or another worker must not replay the first session's random points.
    entropy = [config.seed, worker, len(study.get_trials(deepcopy=False))]
    seed = int(np.random.SeedSequence(entropy).generate_state(1)[0])
    study.sampler = _sampler(config.tune, seed)
    study.pruner = _pruner(config.tune)
    return study


def _sampler(tune: TuneConfig, seed: int) -> optuna.samplers.BaseSampler:
    if tune.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # constant_liar: parallel workers treat running trials as bad, so they spread out.
    return optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=tune.startup_trials, constant_liar=True
    )


def _pruner(tune: TuneConfig) -> optuna.pruners.BasePruner:
    if tune.pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=tune.startup_trials, n_warmup_steps=tune.pruner_warmup_epochs
        )
    if tune.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, tune.pruner_warmup_epochs))
    return optuna.pruners.NopPruner()


def budget(tune: TuneConfig) -> optuna.study.MaxTrialsCallback:
    return optuna.study.MaxTrialsCallback(tune.trials, states=FINISHED)


def has_target(study: optuna.Study, tune: TuneConfig) -> bool:
    return len(study.get_trials(deepcopy=False, states=FINISHED)) >= tune.trials


@dataclass(frozen=True)
class StudySummary:
    family: str
    study_name: str
    target: int
    counts: dict[str, int]  # trials by state: COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    best_value: float | None
    best_trial: int | None
    best_params: dict[str, Any]
    importances: dict[str, float]

    @property
    def finished(self) -> int:
        return sum(self.counts.get(state.name, 0) for state in FINISHED)


def summarize(study: optuna.Study, family: str, target: int) -> StudySummary:
    trials = study.get_trials(deepcopy=False)
    counts = Counter(t.state.name for t in trials)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = study.best_trial if complete else None
    return StudySummary(
        family=family,
        study_name=study.study_name,
        target=target,
        counts=dict(sorted(counts.items())),
        best_value=best.value if best else None,
        best_trial=best.number if best else None,
        best_params=dict(best.params) if best else {},
        importances=_importances(study, len(complete)),
    )


def log_summary(study: optuna.Study, summary: StudySummary) -> None:
    """The study's summary, in the active run (the session's)."""
    family = summary.family
    metrics: dict[str, float] = {
        f"{family}.trials_{state.lower()}": n for state, n in summary.counts.items()
    }
    if summary.best_value is not None:
        metrics[f"{family}.best_value"] = summary.best_value
    mlflow.log_metrics(
        metrics | {f"{family}.importance.{k}": v for k, v in summary.importances.items()}
    )
    params = {f"{family}.best.{k}": v for k, v in summary.best_params.items()}
    params |= {f"{family}.study": summary.study_name, f"{family}.best_trial": summary.best_trial}
    mlflow.log_params(params)
    mlflow.log_dict(asdict(summary), f"{family}/summary.json")
    for name, figure in _figures(study, summary).items():
        mlflow.log_figure(figure, f"{family}/plots/{name}")
        plots.close(figure)


def _importances(study: optuna.Study, complete: int) -> dict[str, float]:
    # PED-ANOVA needs two complete trials and at least one searched setting.
    if complete < 2 or not study.best_trial.params:
        return {}
    return {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}


def _figures(study: optuna.Study, summary: StudySummary) -> dict[str, Any]:
    if summary.best_value is None:
        return {}
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    from optuna.visualization import matplotlib as optuna_plots  # imports pyplot: keep it lazy

    # Experimental in Optuna: the caller silences that warning (workers.quiet_optuna).
    figures = {"optimization_history.png": optuna_plots.plot_optimization_history(study)}
    # Parallel coordinates and importances say something only about two settings or more.
    if len(summary.best_params) > 1:
        figures["parallel_coordinate.png"] = optuna_plots.plot_parallel_coordinate(study)
    if len(summary.importances) > 1:
        figures["param_importances.png"] = optuna_plots.plot_param_importances(study)
    if any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
        figures["intermediate_values.png"] = optuna_plots.plot_intermediate_values(study)
    return {name: axes.figure for name, axes in figures.items()}
