"""Data validation: each check fails on the data it is meant to catch, naming the column."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from mlops.config import DataConfig
from mlops.errors import DataError
from mlops.validation import column_kinds, validate
from tests.conftest import mixed_frame


def data_config(**changes: object) -> DataConfig:
    fields: dict[str, object] = {
        "source": "unused.csv",
        "target": "churned",
        "task": "classification",
        "prepared_dir": "unused",
        "min_rows": 50,
    }
    fields.update(changes)
    return DataConfig(**fields)  # type: ignore[arg-type]


def test_valid_mixed_data_passes_and_kinds_are_inferred() -> None:
    report = validate(mixed_frame(), data_config())
    assert report.kinds == {
        "income": "numeric",
        "age": "numeric",
        "city": "categorical",
        "plan": "categorical",
    }
    assert report.missing_fractions["income"] == pytest.approx(0.1)


def test_missing_target_is_named() -> None:
    with pytest.raises(DataError, match="target column 'label' not found"):
        validate(mixed_frame(), data_config(target="label"))


def test_too_many_missing_values_names_the_column() -> None:
    frame = mixed_frame()
    frame.loc[: len(frame) // 2, "age"] = np.nan
    with pytest.raises(DataError, match="column 'age' has 50% missing"):
        validate(frame, data_config())


def test_constant_and_empty_columns_are_rejected() -> None:
    frame = mixed_frame().assign(const=7.0)
    with pytest.raises(DataError, match="column 'const' is constant"):
        validate(frame, data_config())
    frame = mixed_frame().assign(empty=np.nan)
    with pytest.raises(DataError, match="column 'empty' is empty"):
        validate(frame, data_config())


def test_single_class_target_is_rejected() -> None:
    frame = mixed_frame().assign(churned=1)
    with pytest.raises(DataError, match="one class"):
        validate(frame, data_config())


def test_too_few_rows_is_rejected() -> None:
    with pytest.raises(DataError, match="has 20 rows; at least 50"):
        validate(mixed_frame(rows=20), data_config())


def test_expected_schema_catches_missing_and_mistyped_columns() -> None:
    expected = {"income": "numeric", "age": "numeric", "city": "categorical", "plan": "categorical"}
    with pytest.raises(DataError, match="expected column 'zip' is missing"):
        validate(mixed_frame(), data_config(columns={**expected, "zip": "numeric"}))
    frame = mixed_frame().astype({"age": object})
    frame.loc[3, "age"] = "forty"
    with pytest.raises(DataError, match="column 'age' should be numeric"):
        validate(frame, data_config(columns=expected))


def test_declared_categorical_overrides_numeric_dtype() -> None:
    kinds = column_kinds(mixed_frame(), data_config(categorical_columns=("age",)))
    assert kinds["age"] == "categorical"


def test_duplicates_are_reported_not_dropped(caplog: pytest.LogCaptureFixture) -> None:
    frame = mixed_frame()
    frame = pd.concat([frame, frame.head(5)], ignore_index=True)
    with caplog.at_level(logging.WARNING):
        report = validate(frame, data_config())
    assert report.duplicate_rows == 5
    assert report.rows == len(frame)
    assert "5 duplicated rows" in caplog.text


def test_regression_needs_numeric_target() -> None:
    frame = mixed_frame().assign(churned=lambda f: f["plan"])
    with pytest.raises(DataError, match="must be numeric for regression"):
        validate(frame, data_config(task="regression"))
