"""Hyperparameter search with Optuna: the parts of the tune step (`mlops/tune.py` drives them).

space.py      search space (config) -> Optuna suggestions -> a family's params
study.py      persistent storage, study names, sampler / pruner, the exact trial budget
objective.py  one trial: fit a family, report per-epoch metrics (pruning), return the metric
trial_runs.py one light MLflow child run per trial
summary.py    the study summary, importances and plots on the session's parent run
workers.py    the trial loop of one worker, N worker processes, the progress display
"""
