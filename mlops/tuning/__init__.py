"""Hyperparameter search with Optuna: the parts of the tune step (`mlops/tune.py` drives them).

space.py      search space (config) -> Optuna suggestions -> a family's params
study.py      persistent storage, study names, sampler / pruner, the trial budget
objective.py  one trial: fit a family, report per-epoch metrics (pruning), return the metric
session.py    what a session's worker processes share, and how they are started
workers.py    the trial loop of one worker, N worker processes, the progress line
trial_runs.py a worker's callback: a light MLflow child run per trial it finished
summary.py    the study summary, importances and plots on the session's parent run
"""
