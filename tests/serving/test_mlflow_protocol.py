"""The MLflow scoring protocol on a real server: every input shape, probabilities, health."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.serving.server import Server

pytestmark = pytest.mark.serving


def expected(estimator: Any, columns: list[str], rows: list[list[float]]) -> list[int]:
    labels: list[int] = estimator.predict(pd.DataFrame(rows, columns=columns)).tolist()
    return labels


def payloads(columns: list[str], rows: list[list[float]]) -> dict[str, Any]:
    records = [dict(zip(columns, row, strict=True)) for row in rows]
    return {
        "dataframe_split": {"dataframe_split": {"columns": columns, "data": rows}},
        "dataframe_records": {"dataframe_records": records},
        "instances-records": {"instances": records},
        "instances-rows": {"instances": rows},
        "inputs-columns": {"inputs": {c: [row[i] for row in rows] for i, c in enumerate(columns)}},
        "inputs-records": {"inputs": records},
    }


@pytest.mark.parametrize(
    "shape",
    [
        "dataframe_split",
        "dataframe_records",
        "instances-records",
        "instances-rows",
        "inputs-columns",
        "inputs-records",
    ],
)
def test_each_json_shape_returns_the_models_predictions(
    linear_server: Server,
    bc_estimator: Any,
    bc_columns: list[str],
    bc_rows: list[list[float]],
    shape: str,
) -> None:
    rows = bc_rows[:5] + bc_rows[-5:]
    reply = linear_server.post("/invocations", payloads(bc_columns, rows)[shape])
    assert reply.status == 200, reply.body
    assert reply.json()["predictions"] == expected(bc_estimator, bc_columns, rows)


def test_csv_returns_the_models_predictions(
    linear_server: Server, bc_estimator: Any, bc_columns: list[str], bc_rows: list[list[float]]
) -> None:
    rows = bc_rows[10:20]
    body = pd.DataFrame(rows, columns=bc_columns).to_csv(index=False).encode()
    reply = linear_server.request("POST", "/invocations", body, {"Content-Type": "text/csv"})
    assert reply.status == 200, reply.body
    assert reply.json()["predictions"] == expected(bc_estimator, bc_columns, rows)


def test_parquet_returns_the_models_predictions(
    linear_server: Server, bc_estimator: Any, bc_columns: list[str], bc_rows: list[list[float]]
) -> None:
    frame = pd.DataFrame(bc_rows[20:30], columns=bc_columns)
    body = frame.to_parquet(index=False)
    headers = {"Content-Type": "application/vnd.apache.parquet"}
    reply = linear_server.request("POST", "/invocations", body, headers)
    assert reply.status == 200, reply.body
    assert reply.json()["predictions"] == bc_estimator.predict(frame).tolist()


def test_probabilities_when_asked_match_predict_proba(
    linear_server: Server, bc_estimator: Any, bc_columns: list[str], bc_rows: list[list[float]]
) -> None:
    rows = bc_rows[:3]
    payload = {
        "dataframe_split": {"columns": bc_columns, "data": rows},
        "params": {"probabilities": True},
    }
    body = linear_server.post("/invocations", payload).json()
    want = bc_estimator.predict_proba(pd.DataFrame(rows, columns=bc_columns))
    np.testing.assert_allclose(body["probabilities"], want, rtol=1e-12)
    assert body["classes"] == [0, 1]


def test_every_prediction_names_the_model_version_in_header_and_body(
    linear_server: Server, bc_columns: list[str], bc_rows: list[list[float]]
) -> None:
    reply = linear_server.post("/invocations", {"instances": bc_rows[:1]})
    assert reply.headers["x-model-version"] == "1"
    assert reply.headers["x-model-name"] == "bc-linear"
    assert reply.json()["model_version"] == "1"


def test_unknown_params_are_refused_for_our_models(
    linear_server: Server, bc_rows: list[list[float]]
) -> None:
    reply = linear_server.post("/invocations", {"instances": bc_rows[:1], "params": {"tempo": 2}})
    assert reply.status == 400
    assert "tempo" in reply.json()["message"]


@pytest.mark.parametrize("path", ["/ping", "/health"])
def test_mlflow_health_checks_answer_200_when_ready(linear_server: Server, path: str) -> None:
    assert linear_server.get(path).status == 200


def test_version_is_mlflows_version(linear_server: Server) -> None:
    import mlflow

    assert linear_server.get("/version").body.decode() == mlflow.__version__


def test_response_is_strict_json(linear_server: Server, bc_rows: list[list[float]]) -> None:
    reply = linear_server.post("/invocations", {"instances": bc_rows[:2]})
    assert reply.headers["content-type"] == "application/json"
    json.loads(reply.body, parse_constant=lambda token: pytest.fail(f"{token} in response"))
