"""Hyperparameter search with Optuna: the parts of the tune step (`mlops/tune.py` drives them).

space.py      search space (config) -> Optuna suggestions -> a family's params
study.py      persistent storage, study names, sampler / pruner, the exact trial budget
objective.py  one trial: fit a family, report per-epoch metrics (pruning), return the metric
session.py    what the processes of a session share, and how they are started
workers.py    the trial loop of one worker, N worker processes, the progress display
trial_runs.py the logger process: a light MLflow child run per trial, each study's summary
summary.py    the study summary, importances and plots on the session's parent run
"""
