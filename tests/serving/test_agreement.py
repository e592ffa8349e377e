"""Property: for random models of our families, the server answers what the logged model answers.

Each case fits a random model with the library's own `fit_family` on random small data (numbers
and categories, both with gaps), logs it with `log_model` to a temp SQLite store, then asks the
server's predictor (`load_model`, in-process) and `mlflow.pyfunc.load_model(uri).predict` about
random rows: training rows, rows with every value missing, unseen categories, extreme numbers and,
for forests, numbers that land on (and next to) the trees' split thresholds. One forest is also
asked over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest

from mlops.config import ForestParams, LinearParams, MLPParams
from mlops.models.families import FamilyParams
from mlops.models.torch_mlp import torch_thread_limit
from mlops.registry import register
from mlops.serving.columns import ColumnsPath
from mlops.serving.forest import ForestRegressorPath
from mlops.serving.model import EstimatorPredictor, Options, ServedModel, load_model
from mlops.serving.settings import parse_source
from mlops.serving.validate import table_from_frame
from mlops.tracking import use_experiment
from tests.serving.conftest import Store, log_ours, using
from tests.serving.server import start_server

pytestmark = [pytest.mark.serving, pytest.mark.slow]

FAMILIES = ("linear", "random_forest", "torch_mlp")
TASKS = ("classification", "regression")
CASES = [(family, task, seed) for seed in (0, 1, 2) for family in FAMILIES for task in TASKS]


@dataclass(frozen=True)
class Case:
    uri: str
    frame: pd.DataFrame  # the training features
    numeric: list[str]
    categorical: list[str]


def _params(family: str, rng: np.random.Generator) -> FamilyParams:
    if family == "linear":
        return LinearParams(C=float(rng.choice([0.1, 1.0, 10.0])))
    if family == "random_forest":
        depth = int(rng.choice([3, 6])) if rng.random() < 0.5 else None
        leaf = int(rng.integers(1, 4))
        return ForestParams(
            n_estimators=int(rng.integers(5, 30)), max_depth=depth, min_samples_leaf=leaf
        )
    return MLPParams(
        hidden_units=(int(rng.integers(4, 17)),), max_epochs=5, patience=2, device="cpu"
    )


def _data(task: str, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.Series]:
    """Random numbers and categories, every column with gaps (so every column may be null)."""
    rows = int(rng.integers(60, 150))
    numeric = {
        f"n{i}": rng.normal(rng.normal(0, 50), rng.uniform(0.1, 20), rows)
        for i in range(rng.integers(1, 4))
    }
    categories = ["a", "b", "c", "d"]
    categorical = {
        f"c{i}": rng.choice(categories[: rng.integers(2, 5)], rows).astype(object)
        for i in range(rng.integers(0, 3))
    }
    frame = pd.DataFrame({**numeric, **categorical})
    score = sum((frame[c] - frame[c].mean()) / frame[c].std() for c in numeric)
    score = score + sum((frame[c] == "a") * 1.0 for c in categorical)
    for column in frame:
        gaps = rng.choice(rows, max(1, rows // 10), replace=False)
        frame.loc[gaps, column] = np.nan if column in numeric else None
    if task == "regression":
        return frame, pd.Series(score * 3 + rng.normal(0, 0.5, rows), name="target")
    labels = np.digitize(
        score + rng.normal(0, 0.3, rows), [-0.5, 0.5] if rng.random() < 0.5 else [0.0]
    )
    return frame, pd.Series(labels, name="target")


@pytest.fixture(scope="module")
def agreement_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    root = tmp_path_factory.mktemp("agreement-store")
    store = Store(f"sqlite:///{root / 'mlflow.db'}", root)
    with using(store.uri):
        use_experiment("agreement")
        yield store


def _log_case(family: str, task: str, seed: int) -> Case:
    rng = np.random.default_rng([seed, FAMILIES.index(family), TASKS.index(task)])
    frame, target = _data(task, rng)
    with torch_thread_limit(1):
        uri = log_ours(family, _params(family, rng), frame, target, task)
    name = f"agree-{family}-{task}-{seed}".replace("_", "-")
    register(uri, name, "champion", {})
    numeric = [c for c in frame if frame[c].dtype.kind == "f"]
    categorical = [c for c in frame if c not in numeric]
    return Case(f"models:/{name}@champion", frame, numeric, categorical)


def _rows(case: Case, rng: np.random.Generator, thresholds: pd.DataFrame | None) -> pd.DataFrame:
    """Training rows, then rows with every value missing, unseen categories, extreme numbers."""
    frame = case.frame
    sample = frame.sample(40, replace=True, random_state=int(rng.integers(1 << 31)))
    missing = frame.head(3).copy()
    # NaN for missing strings too, as pandas stores them in the training frame: the model's own
    # imputer does not see None as missing in an object column (the server does).
    missing[case.numeric + case.categorical] = np.nan
    unseen = frame.head(3).copy()
    unseen[case.categorical] = "zzz"
    extreme = frame.head(4).copy()
    for column in case.numeric:
        extreme[column] = (
            frame[column].std() * np.array([-1e3, -1.0, 1.0, 1e3]) + frame[column].mean()
        )
    parts = [sample, missing, unseen, extreme, *([] if thresholds is None else [thresholds])]
    return pd.concat(parts, ignore_index=True)


def _threshold_rows(case: Case, pipeline: Any) -> pd.DataFrame:
    """Rows whose scaled numbers land on split thresholds of the forest's trees, and just beside:
    each threshold and its float32 neighbours, mapped back through the fitted scaler, and the
    nearest float64 numbers around that."""
    preprocessor, forest = pipeline.steps[0][1], pipeline.steps[-1][1]
    scaler = preprocessor.named_transformers_["numeric"].named_steps["scale"]
    rows: list[pd.Series] = []
    on_both_sides = 0
    for tree in forest.estimators_[:5]:
        inner = np.flatnonzero(tree.tree_.feature >= 0)
        for node in inner[:6]:
            feature = int(tree.tree_.feature[node])
            if feature >= len(case.numeric):  # a one-hot column
                continue
            threshold = tree.tree_.threshold[node]
            rounded = np.float32(threshold)
            targets = (threshold, rounded, *np.nextafter(rounded, np.float32([-np.inf, np.inf])))
            for target in targets:
                raw = float(target) * scaler.scale_[feature] + scaler.mean_[feature]
                for value in [*np.nextafter(raw, [-np.inf, np.inf]).tolist(), raw]:
                    row = case.frame.iloc[len(rows) % len(case.frame)].copy()
                    row[case.numeric[feature]] = value
                    rows.append(row)
            on_both_sides += _on_both_sides(preprocessor, rows[-12:], feature, threshold)
    assert on_both_sides, "no row lands next to a threshold on either side"
    frame = pd.DataFrame(rows).reset_index(drop=True)
    return frame.astype(dict.fromkeys(case.numeric, np.float64))


def _on_both_sides(
    preprocessor: Any, rows: list[pd.Series], feature: int, threshold: float
) -> bool:
    """Whether the rows' scaled values (as the float32 the tree tests) include the largest float32
    at most `threshold` (goes left) and the next one up (goes right)."""
    scaled = preprocessor.transform(pd.DataFrame(rows).infer_objects())[:, feature].astype(
        np.float32
    )
    left = np.float32(threshold)
    if left > threshold:
        left = np.nextafter(left, np.float32(-np.inf))
    right = np.nextafter(left, np.float32(np.inf))
    return bool((scaled == left).any() and (scaled == right).any())


def _assert_same(ours: Any, theirs: Any, exact: bool = True) -> None:
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape
    if not exact:
        # The MLP is float32: a feature matrix laid out otherwise may change its last bits.
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-9)
    else:
        np.testing.assert_array_equal(ours, theirs)


def _served(case: Case, family: str) -> ServedModel:
    """The served model, on the features path (it agreed at load)."""
    model = load_model(parse_source(case.uri, "agree"), 8, threads=1)
    predictor = model.predictor
    assert isinstance(predictor, EstimatorPredictor)
    assert isinstance(getattr(predictor.inputs, "__self__", None), ColumnsPath)
    assert isinstance(predictor.estimator, ForestRegressorPath) == (family == "random_forest")
    return model


@pytest.mark.parametrize(("family", "task", "seed"), CASES)
def test_the_served_answer_is_the_logged_models_answer(
    agreement_store: Store, family: str, task: str, seed: int
) -> None:
    case = _log_case(family, task, seed)
    model = _served(case, family)
    pyfunc = mlflow.pyfunc.load_model(case.uri)
    thresholds = None
    if family == "random_forest":
        thresholds = _threshold_rows(case, mlflow.sklearn.load_model(case.uri))
    rows = _rows(case, np.random.default_rng(seed), thresholds)
    table = table_from_frame(model.schema, rows)
    probabilities = task == "classification"
    ours = model.predict([table], Options(probabilities=probabilities))
    _assert_same(ours.values, np.asarray(pyfunc.predict(rows)).reshape(-1))
    if probabilities:
        estimator = (
            pyfunc.unwrap_python_model() if family == "torch_mlp" else pyfunc.get_raw_model()
        )
        _assert_same(ours.probabilities, estimator.predict_proba(rows))


def test_a_forest_over_http_answers_what_the_logged_model_answers(
    agreement_store: Store, tmp_path: Path
) -> None:
    case = _log_case("random_forest", "classification", 2)
    rows = _rows(
        case, np.random.default_rng(2), _threshold_rows(case, mlflow.sklearn.load_model(case.uri))
    )
    server = start_server(agreement_store.uri, case.uri, tmp_path)
    try:
        data = rows.astype(object).where(rows.notna(), None).to_numpy().tolist()
        payload = {"dataframe_split": {"columns": list(rows.columns), "data": data}}
        reply = server.post("/invocations", payload)
    finally:
        server.stop()
    assert reply.status == 200, reply.body
    _assert_same(reply.json()["predictions"], mlflow.pyfunc.load_model(case.uri).predict(rows))
