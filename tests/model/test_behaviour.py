"""Model behaviour, not only a score: invariance, direction, minimum functionality, determinism.

Fitted on the real bundled data sets through the same code path as `train`, without MLflow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops.config import Config, load_config
from mlops.data import coerce_types, load_raw, split
from mlops.evaluate import evaluate
from mlops.models.families import FitInputs, family_params, fit_family
from mlops.validation import validate
from tests.conftest import FAST_OVERRIDES, REPO

FAMILIES = ("linear", "random_forest", "torch_mlp")


def fit_inputs(config_name: str, tmp: Path, seed: int = 42) -> tuple[Config, FitInputs, Any]:
    config = load_config(REPO / "configs" / config_name, [*FAST_OVERRIDES, f"seed={seed}"])
    raw = load_raw(config.data, tmp)
    report = validate(raw.frame, config.data)
    splits = split(coerce_types(raw.frame, report.kinds), config.data, config.seed)
    target = config.data.target

    def xy(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
        return frame.drop(columns=[target]), frame[target]

    inputs = FitInputs(
        xy(splits.train), xy(splits.validation), report.kinds, config.data.task, config.seed
    )
    return config, inputs, xy(splits.test)


@pytest.fixture(scope="module")
def cancer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, FitInputs, Any]:
    return fit_inputs("default.yaml", tmp_path_factory.mktemp("raw"))


@pytest.fixture(scope="module")
def cancer_models(cancer: tuple[Config, FitInputs, Any]) -> dict[str, Any]:
    config, inputs, _ = cancer
    return {f: fit_family(f, family_params(config.train, f), inputs) for f in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
def test_minimum_accuracy_on_held_out_rows(
    family: str, cancer: tuple[Config, FitInputs, Any], cancer_models: dict[str, Any]
) -> None:
    features, target = cancer[2]
    scores = evaluate(cancer_models[family], features, target, "classification")
    assert scores["accuracy"] >= 0.9
    assert scores["roc_auc"] >= 0.95


@pytest.mark.parametrize("family", FAMILIES)
def test_class_prototypes_are_easy_cases(
    family: str, cancer: tuple[Config, FitInputs, Any], cancer_models: dict[str, Any]
) -> None:
    features, target = cancer[1].train
    prototypes = features.groupby(target).median()
    predicted = cancer_models[family].predict(prototypes)
    assert list(predicted) == list(prototypes.index)


@pytest.mark.parametrize("family", FAMILIES)
def test_larger_tumours_look_less_benign(
    family: str, cancer: tuple[Config, FitInputs, Any], cancer_models: dict[str, Any]
) -> None:
    """Target 1 is benign; larger, more concave tumours must lower its probability."""
    features = cancer[2][0]
    train = cancer[1].train[0]
    drivers = ["worst radius", "worst concave points", "worst perimeter", "worst area"]
    low, high = features.copy(), features.copy()
    for column in drivers:
        low[column] = train[column].quantile(0.1)
        high[column] = train[column].quantile(0.9)
    model = cancer_models[family]
    assert model.predict_proba(high)[:, 1].mean() < model.predict_proba(low)[:, 1].mean() - 0.2


@pytest.mark.parametrize("family", FAMILIES)
def test_row_order_column_order_and_extra_columns_do_not_matter(
    family: str, cancer: tuple[Config, FitInputs, Any], cancer_models: dict[str, Any]
) -> None:
    features = cancer[2][0]
    model = cancer_models[family]
    expected = model.predict_proba(features)
    shuffled_rows = features.sample(frac=1.0, random_state=0)
    reordered = model.predict_proba(shuffled_rows)
    position = {label: i for i, label in enumerate(features.index)}
    np.testing.assert_allclose(reordered, expected[[position[i] for i in shuffled_rows.index]])
    shuffled_columns = features[features.columns[::-1]].assign(note="irrelevant")
    np.testing.assert_allclose(model.predict_proba(shuffled_columns), expected)


def test_mlp_training_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    config, inputs, test = fit_inputs("default.yaml", tmp_path)
    params = family_params(config.train, "torch_mlp")
    first = evaluate(fit_family("torch_mlp", params, inputs), *test, "classification")
    again = evaluate(fit_family("torch_mlp", params, inputs), *test, "classification")
    assert first == again
    _, other_inputs, _ = fit_inputs("default.yaml", tmp_path, seed=7)
    other = evaluate(fit_family("torch_mlp", params, other_inputs), *test, "classification")
    assert other["log_loss"] != first["log_loss"]


def test_forest_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    config, inputs, test = fit_inputs("default.yaml", tmp_path)
    params = family_params(config.train, "random_forest")
    first = evaluate(fit_family("random_forest", params, inputs), *test, "classification")
    again = evaluate(fit_family("random_forest", params, inputs), *test, "classification")
    assert first == again


@pytest.mark.parametrize("family", FAMILIES)
def test_regression_follows_body_mass_index(family: str, tmp_path: Path) -> None:
    """Diabetes progression rises with BMI (the data set's strongest single feature)."""
    config, inputs, test = fit_inputs("regression.yaml", tmp_path)
    model = fit_family(family, family_params(config.train, family), inputs)
    features = test[0]
    low = features.assign(bmi=features["bmi"].quantile(0.1))
    high = features.assign(bmi=features["bmi"].quantile(0.9))
    assert model.predict(high).mean() > model.predict(low).mean()
    assert evaluate(model, *test, "regression")["r2"] > 0.2
