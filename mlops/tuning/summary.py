"""The summary of a study, logged on the tuning session's parent run (docs/tuning.md).

Importances are PED-ANOVA (Optuna's default evaluator; it needs only numpy); figures use Optuna's
matplotlib backend (plotly is not a dependency). Everything covers the whole study, earlier
sessions too.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import optuna
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from optuna.trial import TrialState

from mlops import plots
from mlops.tuning.study import FINISHED


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


def log_summary(run_id: str, study: optuna.Study, summary: StudySummary) -> None:
    client, family = MlflowClient(), summary.family
    metrics: dict[str, float] = {
        f"{family}.trials_{state.lower()}": n for state, n in summary.counts.items()
    }
    if summary.best_value is not None:
        metrics[f"{family}.best_value"] = summary.best_value
    metrics |= {f"{family}.importance.{k}": v for k, v in summary.importances.items()}
    params = {f"{family}.best.{k}": v for k, v in summary.best_params.items()}
    params |= {f"{family}.study": summary.study_name, f"{family}.best_trial": summary.best_trial}
    now_ms = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), now_ms, 0) for k, v in metrics.items()],
        params=[Param(k, str(v)) for k, v in params.items()],
    )
    client.log_dict(run_id, asdict(summary), f"{family}/summary.json")
    for name, figure in _figures(study, summary).items():
        client.log_figure(run_id, figure, f"{family}/plots/{name}")
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
