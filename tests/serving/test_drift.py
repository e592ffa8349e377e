"""Drift: the profile's bins, PSI, the sliding window, and the gauges of a real server over HTTP.

The server tests use their own model, trained on 2 000 rows of the mixed data set (numeric and
categorical columns, missing values) and served with a 2 000-row window: every test first sends
at least a full window, so it sees only its own rows. With 2 000 rows on each side, chance alone
gives a PSI of about 10 x (1/2000 + 1/2000) = 0.01 per column.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mlops.config import LinearParams, load_config
from mlops.errors import ConfigError
from mlops.models.families import FitInputs, fit_family
from mlops.models.logged import log_model
from mlops.profile import build_profile, prediction_profile, quantile_bins
from mlops.registry import register
from mlops.serving.drift import DriftMonitor, Reference, Window, psi, reference
from mlops.serving.schema import Column, InputSchema
from tests.conftest import mixed_frame
from tests.serving.conftest import RECORDS_GENERIC, Store, using
from tests.serving.server import Server, start_server

pytestmark = pytest.mark.serving

WINDOW_ROWS = 2000
FEATURES = ["income", "age", "city", "plan"]
KINDS = {"income": "numeric", "age": "numeric", "city": "categorical", "plan": "categorical"}
DRIFT_NAMES = (
    "mlops_feature_drift_psi",
    "mlops_feature_missing_ratio",
    "mlops_prediction_drift_psi",
    "mlops_drift_window_rows",
)
SCHEMA = InputSchema(
    (Column("income", "double"), Column("age", "double"), Column("city", "string"))
)


@dataclasses.dataclass(frozen=True)
class Splits:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame


@pytest.fixture(scope="module")
def splits() -> Splits:
    frame = mixed_frame(rows=3 * WINDOW_ROWS, seed=1)
    parts = [frame.iloc[i * WINDOW_ROWS : (i + 1) * WINDOW_ROWS] for i in range(3)]
    return Splits(*parts)


@pytest.fixture(scope="module")
def drift_server(
    store: Store, splits: Splits, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A linear model fitted, profiled and logged as train does, behind a 2 000-row window."""
    train, validation = splits.train, splits.validation
    inputs = FitInputs(
        (train[FEATURES], train["churned"]),
        (validation[FEATURES], validation["churned"]),
        KINDS,
        "classification",
        seed=0,
    )
    model = fit_family("linear", LinearParams(), inputs)
    metadata = {
        "data_profile": build_profile(train, KINDS, "churned", "classification"),
        "prediction_profile": prediction_profile(
            model.predict(validation[FEATURES]), "classification"
        ),
    }
    with using(store.uri), mlflow.start_run():
        uri = str(log_model(model, "linear", train[FEATURES], metadata).model_uri)
        register(uri, "drift-mixed", "champion", {})
    server = start_server(
        store.uri,
        "models:/drift-mixed@champion",
        tmp_path_factory.mktemp("drift-server"),
        overrides=[f"serve.drift_window_rows={WINDOW_ROWS}"],
    )
    yield server
    server.stop()


def send(server: Server, frame: pd.DataFrame) -> None:
    data = frame[FEATURES].astype(object).where(frame[FEATURES].notna(), None)
    payload = {"dataframe_split": {"columns": FEATURES, "data": data.to_numpy().tolist()}}
    reply = server.post("/invocations", payload)
    assert reply.status == 200, reply.body


def gauges(server: Server) -> dict[tuple[str, str], float]:
    """(metric, column) -> value of every drift gauge ("" for the unlabelled ones)."""
    text = server.get("/metrics").body.decode()
    return {
        (sample.name, sample.labels.get("column", "")): float(sample.value)
        for family in text_string_to_metric_families(text)
        if family.name in DRIFT_NAMES
        for sample in family.samples
    }


def feature_psi(found: dict[tuple[str, str], float]) -> dict[str, float]:
    return {c: v for (name, c), v in found.items() if name == "mlops_feature_drift_psi"}


# Bins and PSI, without a server.


def test_psi_of_a_distribution_against_itself_is_zero() -> None:
    shares = np.array([0.2, 0.3, 0.5, 0.0])
    assert psi(shares, shares) == 0.0


def test_psi_floors_empty_buckets_instead_of_going_infinite() -> None:
    value = psi(np.array([0.5, 0.5]), np.array([1.0, 0.0]))
    assert np.isfinite(value) and value > 1.0


def test_training_rows_in_their_own_bins_give_psi_zero() -> None:
    income = np.random.default_rng(0).normal(size=1000)
    income[::10] = np.nan
    profile = build_profile(
        pd.DataFrame({"income": income, "y": 0}), {"income": "numeric"}, "y", ""
    )
    window = Window(_reference({"income": profile["columns"]["income"]}), rows=1000)
    window.add(window.reference.buckets(np.column_stack([income, income, income]), income))
    assert window.psi() == pytest.approx([0.0])


def test_deciles_give_ten_bins_of_a_tenth() -> None:
    bins = quantile_bins(np.arange(1000, dtype=np.float64))
    assert len(bins["edges"]) == 9
    assert bins["shares"] == pytest.approx([0.1] * 10)


def test_a_constant_column_is_one_bin() -> None:
    assert quantile_bins(np.full(50, 3.0)) == {"edges": [], "shares": [1.0]}


def test_equal_edges_are_merged_and_shares_count_missing_rows() -> None:
    values = np.array([0.0] * 60 + [1.0] * 30 + [np.nan] * 10)
    bins = quantile_bins(values)
    assert bins == {"edges": [1.0], "shares": [0.6, 0.3]}


def test_an_all_missing_column_has_one_empty_bin() -> None:
    assert quantile_bins(np.full(5, np.nan)) == {"edges": [], "shares": [0.0]}


def test_values_fall_in_bins_closed_on_the_left_and_missing_after_them() -> None:
    bins = {"edges": [1.0, 2.0], "shares": [0.3, 0.3, 0.3]}
    found = _reference({"income": {"bins": bins, "missing_fraction": 0.1}})
    data = np.array([[v, 0.0, ""] for v in (0.5, 1.0, 5.0, np.nan)], dtype=object)
    assert found.buckets(data, np.zeros(4)).ravel().tolist() == [0, 1, 2, 3]
    assert found.expected.tolist() == [0.3, 0.3, 0.3, 0.1]


def _reference(columns: dict[str, Any]) -> Reference:
    found = reference(SCHEMA, {"data_profile": {"columns": columns}})
    assert found is not None
    return found


def test_unseen_categories_and_missing_get_their_own_buckets() -> None:
    profile = {"columns": {"city": {"shares": {"lyon": 0.5, "nice": 0.4}, "missing_fraction": 0.1}}}
    found = reference(SCHEMA, {"data_profile": profile})
    assert found is not None and found.names == ("city",)
    data = np.array([[0.0, 0.0, v] for v in ("nice", "paris", None, "lyon")], dtype=object)
    assert found.buckets(data, np.zeros(4)).ravel().tolist() == [1, 2, 3, 0]
    assert found.expected.tolist() == [0.5, 0.4, 0.0, 0.1]


def test_a_profile_without_bins_has_no_reference() -> None:
    old = {"columns": {"income": {"kind": "numeric", "min": 0.0, "max": 1.0}}}
    assert reference(SCHEMA, {"data_profile": old}) is None
    assert reference(SCHEMA, None) is None


def _window(rows: int) -> Window:
    return Window(_reference({"income": {"bins": {"edges": [0.0], "shares": [0.5, 0.5]}}}), rows)


def test_the_window_fills_then_slides_over_the_last_rows() -> None:
    window = _window(rows=4)
    table = np.array([[-1.0, 0, 0], [1.0, 0, 0], [np.nan, 0, 0]])
    window.add(window.reference.buckets(table, np.zeros(3)))
    assert window.filled == 3 and window.counts.tolist() == [1, 1, 1]
    window.add(window.reference.buckets(table[:2], np.zeros(2)))  # drops the first -1.0
    assert window.filled == 4 and window.counts.tolist() == [1, 2, 1]
    assert window.missing_ratio().tolist() == [0.25]


def test_a_batch_larger_than_the_window_keeps_its_last_rows() -> None:
    window = _window(rows=2)
    table = np.array([[-1.0, 0, 0]] * 3 + [[1.0, 0, 0]] * 2)
    window.add(window.reference.buckets(table, np.zeros(5)))
    assert window.filled == 2 and window.counts.tolist() == [0, 2, 0]


def test_no_drift_series_when_drift_is_off_or_the_model_has_no_bins() -> None:
    found = _window(rows=4).reference
    version = SimpleNamespace(version="1")
    for rows, model in (
        (0, SimpleNamespace(drift=found, ref=version)),
        (100, SimpleNamespace(drift=None, ref=version)),
    ):
        registry = CollectorRegistry()
        DriftMonitor(registry, rows).serve([model])  # type: ignore[list-item]  # .drift, .ref read
        assert b"drift" not in generate_latest(registry)


def test_a_negative_window_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="drift_window_rows"):
        load_config(
            Path(__file__).resolve().parents[2] / "configs" / "default.yaml",
            ["serve.drift_window_rows=-1"],
        )


# Gauges of a real server.


def test_the_training_split_itself_has_no_drift(drift_server: Server, splits: Splits) -> None:
    send(drift_server, splits.train)
    found = feature_psi(gauges(drift_server))
    assert set(found) == set(FEATURES)
    assert max(found.values()) < 1e-3, found


def test_the_test_split_stays_under_the_first_threshold(
    drift_server: Server, splits: Splits
) -> None:
    send(drift_server, splits.test)
    found = gauges(drift_server)
    assert max(feature_psi(found).values()) < 0.1, found
    assert found["mlops_prediction_drift_psi", ""] < 0.1, found


def test_a_column_shifted_by_three_deviations_drifts_alone(
    drift_server: Server, splits: Splits
) -> None:
    shift = 3 * splits.train["income"].std()
    send(drift_server, splits.test.assign(income=splits.test["income"] + shift))
    found = feature_psi(gauges(drift_server))
    assert found.pop("income") > 0.25
    assert max(found.values()) < 0.1, found


def test_prediction_drift_follows_shifted_predictions(drift_server: Server, splits: Splits) -> None:
    send(drift_server, splits.test)
    calm = gauges(drift_server)["mlops_prediction_drift_psi", ""]
    # Income drives the churn score: three deviations up turn most predictions to churn.
    shift = 3 * splits.train["income"].std()
    send(drift_server, splits.test.assign(income=splits.test["income"] + shift))
    shifted = gauges(drift_server)["mlops_prediction_drift_psi", ""]
    assert calm < 0.1 < 0.25 < shifted


def test_missing_ratio_is_the_share_of_missing_values_in_the_window(
    drift_server: Server, splits: Splits
) -> None:
    rows = splits.test.copy()
    rows.loc[rows.index[:500], "city"] = None
    send(drift_server, rows)
    found = gauges(drift_server)
    for column in ("income", "city", "age"):
        expected = rows[column].isna().mean()
        assert found["mlops_feature_missing_ratio", column] == pytest.approx(expected)
    assert found["mlops_feature_missing_ratio", "city"] >= 0.25


def test_the_window_holds_at_most_drift_window_rows(drift_server: Server, splits: Splits) -> None:
    send(drift_server, pd.concat([splits.test, splits.test.head(500)]))
    assert gauges(drift_server)["mlops_drift_window_rows", ""] == WINDOW_ROWS
    send(drift_server, splits.test.head(10))
    assert gauges(drift_server)["mlops_drift_window_rows", ""] == WINDOW_ROWS


def test_a_model_without_bins_serves_and_exports_no_drift(generic_server: Server) -> None:
    payload = {"dataframe_records": RECORDS_GENERIC}
    assert generic_server.post("/invocations", payload).status == 200
    assert not gauges(generic_server)
