"""v2 REST through Triton's own HTTP client: binary tensor data (its default) and JSON, every
endpoint, predictions compared with the logged model's pyfunc; malformed binary bodies get 400."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton

from tests.conftest import mixed_frame
from tests.serving.conftest import Store, breast_cancer, using
from tests.serving.server import Server

pytestmark = pytest.mark.serving

INFER = "/v2/models/bc-linear/infer"


@pytest.fixture(scope="module")
def client(linear_server: Server) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(f"127.0.0.1:{linear_server.port}", network_timeout=10)
    yield client
    client.close()


@pytest.fixture(scope="module")
def bc_frame() -> pd.DataFrame:
    return breast_cancer()[0].iloc[:7]


def pyfunc_predict(store: Store, uri: str, frame: pd.DataFrame) -> np.ndarray:
    with using(store.uri):
        return np.asarray(mlflow.pyfunc.load_model(uri).predict(frame))


def column_inputs(frame: pd.DataFrame, binary: bool) -> list[triton.InferInput]:
    inputs = []
    for name in frame.columns:
        values = frame[name].to_numpy()
        datatype = "BYTES" if values.dtype == object else "FP64"
        tensor = triton.InferInput(str(name), [len(frame)], datatype)
        tensor.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor)
    return inputs


def test_server_endpoints_answer_the_triton_client(
    client: triton.InferenceServerClient, bc_frame: pd.DataFrame
) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("bc-linear") and client.is_model_ready("bc-linear", "1")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    metadata = client.get_model_metadata("bc-linear", "1")
    assert [i["name"] for i in metadata["inputs"]] == list(bc_frame.columns)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_column_tensors_predict_as_the_pyfunc(
    client: triton.InferenceServerClient, store: Store, bc_frame: pd.DataFrame, binary: bool
) -> None:
    outputs = [triton.InferRequestedOutput("predictions", binary_data=binary)]
    result = client.infer("bc-linear", column_inputs(bc_frame, binary), outputs=outputs)
    expected = pyfunc_predict(store, "models:/bc-linear@champion", bc_frame)
    np.testing.assert_array_equal(result.as_numpy("predictions"), expected)
    assert result.get_response()["model_version"] == "1"


def test_one_2d_binary_tensor_with_binary_and_json_outputs(
    client: triton.InferenceServerClient, store: Store, bc_frame: pd.DataFrame, bc_estimator: Any
) -> None:
    matrix = triton.InferInput("input-0", list(bc_frame.shape), "FP64")
    matrix.set_data_from_numpy(bc_frame.to_numpy())
    outputs = [
        triton.InferRequestedOutput("predictions"),  # binary: the client's default
        triton.InferRequestedOutput("probabilities", binary_data=False),
    ]
    result = client.infer("bc-linear", [matrix], model_version="1", outputs=outputs)
    expected = pyfunc_predict(store, "models:/bc-linear@champion", bc_frame)
    np.testing.assert_array_equal(result.as_numpy("predictions"), expected)
    probabilities = result.as_numpy("probabilities")
    np.testing.assert_allclose(probabilities, bc_estimator.predict_proba(bc_frame), rtol=1e-12)


def test_no_outputs_named_returns_predictions_as_binary(
    client: triton.InferenceServerClient, store: Store, bc_frame: pd.DataFrame
) -> None:
    result = client.infer("bc-linear", column_inputs(bc_frame, binary=True))
    (output,) = result.get_response()["outputs"]
    assert output["parameters"]["binary_data_size"] == 8 * len(bc_frame)
    expected = pyfunc_predict(store, "models:/bc-linear@champion", bc_frame)
    np.testing.assert_array_equal(result.as_numpy("predictions"), expected)


def test_strings_as_length_prefixed_bytes(mlp_server: Server, store: Store) -> None:
    frame = mixed_frame().drop(columns=["churned"]).dropna().iloc[:9]
    frame[["city", "plan"]] = frame[["city", "plan"]].astype(object)
    client = triton.InferenceServerClient(f"127.0.0.1:{mlp_server.port}", network_timeout=10)
    try:
        result = client.infer("mixed-mlp", column_inputs(frame, binary=True))
    finally:
        client.close()
    expected = pyfunc_predict(store, "models:/mixed-mlp@champion", frame)
    np.testing.assert_array_equal(result.as_numpy("predictions"), expected)


def binary_body(header: dict[str, Any], data: bytes) -> tuple[bytes, str]:
    text = json.dumps(header).encode()
    return text + data, str(len(text))


def fp64_input(name: str, rows: int, size: int) -> dict[str, Any]:
    shape = [rows, 30] if name == "input-0" else [rows]
    parameters = {"binary_data_size": size}
    return {"name": name, "shape": shape, "datatype": "FP64", "parameters": parameters}


@pytest.mark.parametrize(
    ("inputs", "data", "length", "message"),
    [
        ([fp64_input("input-0", 1, 240)], bytes(200), None, "'input-0': binary_data_size 240 runs"),
        ([fp64_input("input-0", 1, 200)], bytes(200), None, "'input-0': 200 bytes do not hold 30"),
        (
            [fp64_input("input-0", 1, 240)],
            bytes(248),
            None,
            "add up to 240 bytes, the body has 248",
        ),
        (
            [fp64_input("input-0", 1, -8)],
            bytes(240),
            None,
            "'input-0': parameters.binary_data_size",
        ),
        ([fp64_input("input-0", 1, 240)], bytes(240), "99999", "Inference-Header-Content-Length"),
        ([fp64_input("input-0", 1, 240)], bytes(240), "x1", "Inference-Header-Content-Length"),
        (
            [{**fp64_input("mean radius", 1, 7), "datatype": "BYTES"}],
            b"\x09\x00\x00\x00abc",
            None,
            "'mean radius': BYTES element runs past",
        ),
    ],
    ids=[
        "past-body",
        "wrong-size",
        "sizes-short",
        "negative",
        "header-past",
        "header-nan",
        "bytes",
    ],
)
def test_malformed_binary_bodies_get_400_naming_the_tensor(
    linear_server: Server,
    inputs: list[dict[str, Any]],
    data: bytes,
    length: str | None,
    message: str,
) -> None:
    body, header_length = binary_body({"inputs": inputs}, data)
    headers = {"Inference-Header-Content-Length": length or header_length}
    reply = linear_server.request("POST", INFER, body, headers)
    assert reply.status == 400, reply.body
    assert message in reply.json()["error"]


def test_binary_body_over_the_limit_gets_413(linear_server: Server) -> None:
    body, header_length = binary_body({"inputs": [fp64_input("input-0", 1, 240)]}, bytes(300_000))
    headers = {"Inference-Header-Content-Length": header_length}
    assert linear_server.request("POST", INFER, body, headers).status == 413
