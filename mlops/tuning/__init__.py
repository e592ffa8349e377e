"""Hyperparameter search with Optuna: the parts of the tune step (`mlops/tune.py` drives them).

study.py      storage, study names, sampler / pruner, the trial budget, the study's summary
objective.py  one trial: suggest params from the search space, fit a family, return the metric
workers.py    the session workers share, their trial loop and processes, trial runs, progress
"""
