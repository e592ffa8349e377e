"""The NumPy forms of fitted imputers and scalers (serving/steps.py): the same numbers as the
step's own `transform`, to the bit, or the step itself where they do not apply."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from mlops.serving.steps import FillMissing, Standardize, numpy_step

pytestmark = pytest.mark.serving


def _with_missing(seed: int = 0) -> np.ndarray:
    values = np.random.default_rng(seed).normal(3.0, 7.0, size=(200, 6))
    values[::7, 1] = np.nan
    values[3::5, 4] = np.nan
    return values


@pytest.mark.parametrize(
    "imputer",
    [
        SimpleImputer(strategy="median"),
        SimpleImputer(strategy="mean"),
        SimpleImputer(strategy="most_frequent"),
    ],
    ids=["median", "mean", "most_frequent"],
)
def test_an_imputer_fills_what_its_transform_fills(imputer: SimpleImputer) -> None:
    fitted = imputer.fit(_with_missing(0))
    form = numpy_step(fitted)
    assert isinstance(form, FillMissing)
    rows = _with_missing(1)
    np.testing.assert_array_equal(form.transform(rows), fitted.transform(rows))
    complete = np.nan_to_num(rows)
    np.testing.assert_array_equal(form.transform(complete), fitted.transform(complete))
    assert np.isnan(rows).any()  # the input is left as it was


@pytest.mark.parametrize(
    "scaler",
    [StandardScaler(), StandardScaler(with_mean=False), StandardScaler(with_std=False)],
    ids=["both", "no-mean", "no-std"],
)
def test_a_scaler_scales_as_its_transform_scales(scaler: StandardScaler) -> None:
    train = np.nan_to_num(_with_missing(0))
    train[:, 2] = 4.0  # a constant column: scale_ is 1 there
    fitted = scaler.fit(train)
    form = numpy_step(fitted)
    assert isinstance(form, Standardize)
    rows = np.nan_to_num(_with_missing(1))
    before = rows.copy()
    np.testing.assert_array_equal(form.transform(rows), fitted.transform(rows))
    np.testing.assert_array_equal(rows, before)


def _empty_column_imputer() -> SimpleImputer:
    train = _with_missing(0)
    train[:, 3] = np.nan  # no statistic: scikit-learn drops the column
    return SimpleImputer().fit(train)


@pytest.mark.parametrize(
    "step",
    [
        SimpleImputer(add_indicator=True).fit(_with_missing(0)),
        SimpleImputer(missing_values=-1.0).fit(np.nan_to_num(_with_missing(0), nan=-1.0)),
        _empty_column_imputer(),
        # its statistics are an object array, even for a number
        SimpleImputer(strategy="constant", fill_value=-1.5).fit(_with_missing(0)),
        StandardScaler().set_output(transform="pandas").fit(np.nan_to_num(_with_missing(0))),
        StandardScaler(),  # not fitted
        MinMaxScaler().fit(np.nan_to_num(_with_missing(0))),
    ],
    ids=[
        "indicator",
        "other-missing-value",
        "empty-column",
        "constant",
        "pandas-output",
        "unfitted",
        "other",
    ],
)
def test_other_steps_keep_their_own_transform(step: Any) -> None:
    assert numpy_step(step) is step
