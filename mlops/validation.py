"""Checks a raw data set must pass before anything is split or trained on.

Each failed check is a `DataError` naming the column and the problem. Duplicated rows are reported,
not fatal: real data has them, and dropping rows silently would change the data set's meaning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd

from mlops.config import DataConfig
from mlops.errors import DataError

log = logging.getLogger(__name__)

# Stratified train / validation / test splits need every class in each of the three parts.
MIN_ROWS_PER_CLASS = 3


@dataclass(frozen=True)
class ValidationReport:
    rows: int
    kinds: dict[str, str]  # feature column -> "numeric" | "categorical"
    duplicate_rows: int
    missing_fractions: dict[str, float]


def validate(frame: pd.DataFrame, config: DataConfig) -> ValidationReport:
    _check_target(frame, config)
    kinds = column_kinds(frame, config)
    if len(frame) < config.min_rows:
        raise DataError(f"data set has {len(frame)} rows; at least {config.min_rows} are needed")
    missing = _check_columns(frame, kinds, config.max_missing_fraction)
    if config.task == "classification":
        _check_classes(frame[config.target], config.target)
    duplicates = int(frame.duplicated().sum())
    if duplicates:
        log.warning("data set has %d duplicated rows (kept)", duplicates)
    return ValidationReport(len(frame), kinds, duplicates, missing)


def column_kinds(frame: pd.DataFrame, config: DataConfig) -> dict[str, str]:
    """The kind of every feature column: from `data.columns` when given, else from the dtypes."""
    features = [c for c in frame.columns if c != config.target]
    if not features:
        raise DataError(f"data set has no feature columns besides the target {config.target!r}")
    if config.columns:
        return _expected_kinds(frame, features, config)
    numeric = {c for c in features if _is_numeric(frame[c])} - set(config.categorical_columns)
    return {c: "numeric" if c in numeric else "categorical" for c in features}


def _expected_kinds(frame: pd.DataFrame, features: list[str], config: DataConfig) -> dict[str, str]:
    missing = [c for c in config.columns if c not in features]
    if missing:
        raise DataError(f"expected column {missing[0]!r} is missing from the data set")
    extra = [c for c in features if c not in config.columns]
    if extra:
        raise DataError(f"unexpected column {extra[0]!r} (not in data.columns)")
    for column, kind in config.columns.items():
        if kind == "numeric" and not _is_numeric(frame[column]):
            raise DataError(
                f"column {column!r} should be numeric but has dtype {frame[column].dtype} "
                "(a value that is not a number?)"
            )
    return dict(config.columns)


def _is_numeric(values: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(values)) and not pd.api.types.is_bool_dtype(values)


def _check_target(frame: pd.DataFrame, config: DataConfig) -> None:
    if config.target not in frame.columns:
        raise DataError(
            f"target column {config.target!r} not found; columns are {list(frame.columns)[:20]}"
        )
    target = frame[config.target]
    if target.isna().any():
        raise DataError(f"target column {config.target!r} has {int(target.isna().sum())} missing")
    if config.task == "regression" and not _is_numeric(target):
        raise DataError(f"target column {config.target!r} must be numeric for regression")


def _check_columns(frame: pd.DataFrame, kinds: dict[str, str], bound: float) -> dict[str, float]:
    fractions = {}
    for column in kinds:
        values = frame[column]
        fraction = float(values.isna().mean())
        if fraction == 1.0:
            raise DataError(f"column {column!r} is empty (every value is missing)")
        if fraction > bound:
            raise DataError(
                f"column {column!r} has {fraction:.0%} missing values; the bound is {bound:.0%}"
            )
        if values.nunique(dropna=True) < 2:
            raise DataError(f"column {column!r} is constant (one distinct value)")
        fractions[column] = fraction
    return fractions


def _check_classes(target: pd.Series, name: str) -> None:
    counts = target.value_counts()
    if len(counts) < 2:
        raise DataError(f"target column {name!r} has one class; classification needs two or more")
    rare = counts[counts < MIN_ROWS_PER_CLASS]
    if len(rare):
        raise DataError(
            f"class {rare.index[0]!r} of target {name!r} has {int(rare.iloc[0])} rows; "
            f"each class needs at least {MIN_ROWS_PER_CLASS} for a stratified split"
        )
