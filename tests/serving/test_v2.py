"""Open Inference Protocol v2 on a real server: health, metadata, both input layouts, errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.conftest import mixed_frame
from tests.serving.server import Server

pytestmark = pytest.mark.serving


def test_server_metadata_and_health(linear_server: Server) -> None:
    assert linear_server.get("/v2").json()["name"] == "mlops-model-server"
    assert linear_server.get("/v2/health/live").json() == {"live": True}
    assert linear_server.get("/v2/health/ready").json() == {"ready": True}


def test_model_metadata_comes_from_the_signature(
    linear_server: Server, bc_columns: list[str]
) -> None:
    metadata = linear_server.get("/v2/models/bc-linear").json()
    assert metadata["versions"] == ["1"]
    assert [i["name"] for i in metadata["inputs"]] == bc_columns
    assert {i["datatype"] for i in metadata["inputs"]} == {"FP64"}
    assert [o["name"] for o in metadata["outputs"]] == ["predictions", "probabilities"]
    assert metadata["parameters"]["classes"] == [0, 1]
    assert linear_server.get("/v2/models/bc-linear/versions/1").json() == metadata


@pytest.mark.parametrize(
    "path", ["/v2/models/bc-linear/ready", "/v2/models/bc-linear/versions/1/ready"]
)
def test_model_ready(linear_server: Server, path: str) -> None:
    assert linear_server.get(path).json() == {"name": "bc-linear", "ready": True}


def test_one_2d_tensor_in_signature_order(
    linear_server: Server, bc_estimator: Any, bc_columns: list[str], bc_rows: list[list[float]]
) -> None:
    rows = bc_rows[:4]
    flat = [value for row in rows for value in row]
    payload = {
        "id": "req-1",
        "inputs": [{"name": "input-0", "shape": [4, 30], "datatype": "FP64", "data": flat}],
        "outputs": [{"name": "predictions"}, {"name": "probabilities"}],
    }
    reply = linear_server.post("/v2/models/bc-linear/infer", payload)
    assert reply.status == 200, reply.body
    body = reply.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("bc-linear", "1", "req-1")
    frame = pd.DataFrame(rows, columns=bc_columns)
    predictions, probabilities = body["outputs"]
    assert predictions == {
        "name": "predictions",
        "shape": [4],
        "datatype": "INT64",
        "data": bc_estimator.predict(frame).tolist(),
    }
    assert probabilities["shape"] == [4, 2]
    np.testing.assert_allclose(
        np.reshape(probabilities["data"], (4, 2)), bc_estimator.predict_proba(frame), rtol=1e-12
    )


def test_versioned_infer_with_nested_data(
    linear_server: Server, bc_rows: list[list[float]]
) -> None:
    payload = {"inputs": [{"name": "x", "shape": [2, 30], "datatype": "FP64", "data": bc_rows[:2]}]}
    reply = linear_server.post("/v2/models/bc-linear/versions/1/infer", payload)
    assert reply.status == 200, reply.body
    assert reply.headers["x-model-version"] == "1"


def test_one_tensor_per_column_with_strings_and_missing_values(mlp_server: Server) -> None:
    """MLServer's pandas codec on the PyTorch MLP: BYTES columns, nulls where training had them."""
    rows = mixed_frame().drop(columns=["churned"]).head(6)
    inputs = []
    for name in rows.columns:
        values = rows[name].astype(object).where(rows[name].notna(), None).tolist()
        datatype = "FP64" if pd.api.types.is_numeric_dtype(rows[name]) else "BYTES"
        inputs.append({"name": name, "shape": [6], "datatype": datatype, "data": values})
    inputs[1]["data"][0] = None  # "age" never missing in training: refused below
    payload = {"inputs": inputs, "parameters": {"content_type": "pd"}}
    refused = mlp_server.post("/v2/models/mixed-mlp/infer", payload)
    assert refused.status == 400
    assert refused.json() == {
        "error": "column 'age', row 0: missing value (null or NaN) is not allowed"
    }
    inputs[1]["data"][0] = 40.0
    inputs[0]["data"][1] = None  # "income" had missing values in training: imputed
    reply = mlp_server.post("/v2/models/mixed-mlp/infer", payload)
    assert reply.status == 200, reply.body
    assert reply.json()["outputs"][0]["shape"] == [6]


@pytest.mark.parametrize(
    ("path", "status"),
    [("/v2/models/other/infer", 404), ("/v2/models/bc-linear/versions/9/infer", 404)],
)
def test_unknown_model_or_version_gets_404(
    linear_server: Server, bc_rows: list[list[float]], path: str, status: int
) -> None:
    payload = {"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP64", "data": bc_rows[0]}]}
    reply = linear_server.post(path, payload)
    assert reply.status == status
    assert set(reply.json()) == {"error"}


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"inputs": []},
        {"inputs": [{"name": "x", "shape": [1, 30], "datatype": "BYTES", "data": ["a"] * 30}]},
        {"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP64", "data": [1.0] * 29}]},
        {
            "inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP64", "data": [1.0] * 30}],
            "outputs": [{"name": "logits"}],
        },
    ],
)
def test_bad_infer_requests_get_400_error(linear_server: Server, payload: object) -> None:
    reply = linear_server.post("/v2/models/bc-linear/infer", payload)
    assert reply.status == 400, reply.body
    assert set(reply.json()) == {"error"}
