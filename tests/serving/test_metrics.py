"""GET /metrics, parsed with prometheus-client's own parser: names, types, labels, values."""

from __future__ import annotations

import time
from collections import Counter
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlops.serving.metrics import Metrics
from mlops.serving.model import Prediction
from tests.conftest import mixed_frame
from tests.serving.server import Server

pytestmark = pytest.mark.serving

COUNTERS = (
    "mlops_http_requests",
    "mlops_validation_errors",
    "mlops_predicted_rows",
    "mlops_predictions",
    "mlops_model_loads",
    "mlops_input_out_of_profile_values",
)
HISTOGRAMS = (
    "mlops_http_request_duration_seconds",
    "mlops_batch_size_rows",
    "mlops_batch_size_requests",
    "mlops_batch_queue_wait_seconds",
    "mlops_batch_predict_duration_seconds",
)
GAUGES = (
    "mlops_http_requests_in_flight",
    "mlops_model_info",
    "mlops_model_ready",
    "mlops_model_load_duration_seconds",
)


def scrape(server: Server) -> dict[str, Any]:
    reply = server.get("/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(reply.body.decode())}


def value(families: dict[str, Any], family: str, sample: str, **labels: str) -> float:
    for s in families[family].samples:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    return 0.0


def test_every_metric_has_its_prometheus_type(
    linear_server: Server, bc_rows: list[list[float]]
) -> None:
    bad_row = [None, *bc_rows[0][1:]]
    linear_server.post("/invocations", {"instances": [bad_row]})
    linear_server.post("/invocations", {"instances": [[v * 100 for v in bc_rows[0]]]})
    families = scrape(linear_server)
    for names, kind in ((COUNTERS, "counter"), (HISTOGRAMS, "histogram"), (GAUGES, "gauge")):
        for name in names:
            assert families[name].type == kind, name


def test_requests_are_counted_by_route_template_and_status(
    linear_server: Server, bc_rows: list[list[float]]
) -> None:
    labels = {"endpoint": "/v2/models/{name}/infer", "method": "POST", "status": "200"}
    before = value(
        scrape(linear_server), "mlops_http_requests", "mlops_http_requests_total", **labels
    )
    payload = {"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP64", "data": bc_rows[0]}]}
    for _ in range(3):
        assert linear_server.post("/v2/models/bc-linear/infer", payload).status == 200
    linear_server.get("/no/such/path")
    families = scrape(linear_server)
    assert (
        value(families, "mlops_http_requests", "mlops_http_requests_total", **labels) == before + 3
    )
    assert (
        value(
            families,
            "mlops_http_requests",
            "mlops_http_requests_total",
            endpoint="unmatched",
            status="404",
        )
        >= 1
    )


def test_validation_errors_are_counted_by_reason(linear_server: Server) -> None:
    before = value(
        scrape(linear_server),
        "mlops_validation_errors",
        "mlops_validation_errors_total",
        reason="empty",
    )
    linear_server.post("/invocations", {"instances": []})
    after = value(
        scrape(linear_server),
        "mlops_validation_errors",
        "mlops_validation_errors_total",
        reason="empty",
    )
    assert after == before + 1


def test_model_info_load_time_and_predicted_classes(
    linear_server: Server, bc_rows: list[list[float]]
) -> None:
    linear_server.post("/invocations", {"instances": bc_rows[:20]})
    families = scrape(linear_server)
    info = [s for s in families["mlops_model_info"].samples if s.value == 1]
    assert [s.labels["name"] for s in info] == ["bc-linear"]
    assert (info[0].labels["version"], info[0].labels["alias"]) == ("1", "champion")
    assert len(info[0].labels["run_id"]) == 32
    assert (
        value(families, "mlops_model_load_duration_seconds", "mlops_model_load_duration_seconds")
        > 0
    )
    assert value(families, "mlops_model_ready", "mlops_model_ready") == 1
    classes = {
        s.labels["class"]
        for s in families["mlops_predictions"].samples
        if s.name.endswith("_total")
    }
    assert classes == {"0", "1"}
    assert (
        value(
            families,
            "mlops_model_loads",
            "mlops_model_loads_total",
            kind="initial",
            result="success",
        )
        == 1
    )


def test_inputs_outside_the_training_range_are_counted(
    linear_server: Server, bc_rows: list[list[float]]
) -> None:
    column = "mean radius"
    before = value(
        scrape(linear_server),
        "mlops_input_out_of_profile_values",
        "mlops_input_out_of_profile_values_total",
        column=column,
    )
    row = [1000.0, *bc_rows[0][1:]]
    assert linear_server.post("/invocations", {"instances": [row]}).status == 200
    after = value(
        scrape(linear_server),
        "mlops_input_out_of_profile_values",
        "mlops_input_out_of_profile_values_total",
        column=column,
    )
    assert after == before + 1


def test_several_workers_report_one_merged_view(mlp_server: Server) -> None:
    """Two worker processes, multi-process mode: counters add up across them."""
    records = mixed_frame().drop(columns=["churned"]).head(1)
    payload = {
        "dataframe_split": {
            "columns": list(records.columns),
            "data": [[55.0, 30.0, "paris", "pro"]],
        }
    }
    labels = {"endpoint": "/invocations", "status": "200"}
    before = value(scrape(mlp_server), "mlops_http_requests", "mlops_http_requests_total", **labels)
    for _ in range(20):
        assert mlp_server.post("/invocations", payload).status == 200
    # A request is counted just after its answer is sent, by a worker that may not be the one
    # answering this scrape: give the last one a moment on a busy machine.
    deadline = time.monotonic() + 5
    while True:
        families = scrape(mlp_server)
        counted = value(families, "mlops_http_requests", "mlops_http_requests_total", **labels)
        if counted >= before + 20 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert counted == before + 20
    assert value(families, "mlops_model_ready", "mlops_model_ready") == 1
    info = [s for s in families["mlops_model_info"].samples if s.value == 1]
    assert {s.labels["name"] for s in info} == {"mixed-mlp"}


@pytest.mark.parametrize(
    "labels",
    [
        np.array([1, 0, 1, 1, 3]),  # small non-negative integers: counted with np.bincount
        np.array([-1, 5000, -1, -1]),  # other integers
        np.array(["yes", "no", "yes", "yes"]),
        np.array([True, False, True]),
        np.array([], dtype=np.int64),  # a generic model may answer with no labels
    ],
    ids=["small-ints", "other-ints", "strings", "booleans", "none"],
)
def test_predicted_classes_are_counted_by_label(labels: np.ndarray) -> None:
    metrics = Metrics(prediction_buckets=(0.5,))
    model: Any = SimpleNamespace(
        task="classification", classes=(), ref=SimpleNamespace(version="3")
    )
    parts = [Prediction(labels[:1]), Prediction(labels[1:])]  # a batch of two requests
    metrics.observe_predict(model, 0.001, parts)
    exposed = text_string_to_metric_families(metrics.exposition().decode())
    counted = {
        sample.labels["class"]: sample.value
        for family in exposed
        if family.name == "mlops_predictions"
        for sample in family.samples
        if sample.name == "mlops_predictions_total"
    }
    assert counted == dict(Counter(str(label) for label in labels.tolist()))
