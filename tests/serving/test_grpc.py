"""The v2 gRPC service through Triton's own gRPC client: every endpoint, raw and typed tensors,
predictions compared with the logged model's pyfunc, status codes, token, limits, metrics."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.conftest import mixed_frame
from tests.serving.conftest import RECORDS_GENERIC, Store, breast_cancer
from tests.serving.server import Server, samples, start_server
from tests.serving.test_v2_binary import pyfunc_predict

pytestmark = pytest.mark.serving


def grpc_url(server: Server) -> str:
    return f"127.0.0.1:{server.extra['grpc_port']}"


@pytest.fixture(scope="module")
def client(linear_server: Server) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(grpc_url(linear_server))
    yield client
    client.close()


@pytest.fixture(scope="module")
def stub(linear_server: Server) -> Iterator[Any]:
    """tritonclient's generated stub, for requests its InferInput does not build (typed contents,
    malformed tensors)."""
    with grpc.insecure_channel(grpc_url(linear_server)) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture(scope="module")
def bc_frame() -> pd.DataFrame:
    return breast_cancer()[0].iloc[:6]


def column_inputs(frame: pd.DataFrame) -> list[triton.InferInput]:
    inputs = []
    for name in frame.columns:
        values = frame[name].to_numpy()
        datatype = {"O": "BYTES", "b": "BOOL", "i": "INT64"}.get(values.dtype.kind, "FP64")
        tensor = triton.InferInput(str(name), [len(frame)], datatype)
        tensor.set_data_from_numpy(values)
        inputs.append(tensor)
    return inputs


def test_health_and_metadata(client: triton.InferenceServerClient, bc_frame: pd.DataFrame) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("bc-linear") and client.is_model_ready("bc-linear", "1")
    assert not client.is_model_ready("bc-linear", "7")
    assert client.get_server_metadata(as_json=True)["name"] == "mlops-model-server"
    metadata = client.get_model_metadata("bc-linear", as_json=True)
    assert metadata["versions"] == ["1"] and metadata["platform"] == "mlflow"
    assert [i["name"] for i in metadata["inputs"]] == list(bc_frame.columns)
    assert [o["name"] for o in metadata["outputs"]] == ["predictions", "probabilities"]


def test_column_tensors_predict_as_the_pyfunc(
    client: triton.InferenceServerClient, store: Store, bc_frame: pd.DataFrame
) -> None:
    result = client.infer("bc-linear", column_inputs(bc_frame), request_id="r-1")
    expected = pyfunc_predict(store, "models:/bc-linear@champion", bc_frame)
    np.testing.assert_array_equal(result.as_numpy("predictions"), expected)
    response = result.get_response()
    assert (response.model_version, response.id) == ("1", "r-1")


def test_one_2d_tensor_with_probabilities(
    client: triton.InferenceServerClient, store: Store, bc_frame: pd.DataFrame, bc_estimator: Any
) -> None:
    matrix = triton.InferInput("input-0", list(bc_frame.shape), "FP64")
    matrix.set_data_from_numpy(bc_frame.to_numpy())
    outputs = [triton.InferRequestedOutput(n) for n in ("predictions", "probabilities")]
    result = client.infer("bc-linear", [matrix], model_version="1", outputs=outputs)
    expected = pyfunc_predict(store, "models:/bc-linear@champion", bc_frame)
    np.testing.assert_array_equal(result.as_numpy("predictions"), expected)
    probabilities = result.as_numpy("probabilities")
    np.testing.assert_allclose(probabilities, bc_estimator.predict_proba(bc_frame), rtol=1e-12)


def test_typed_contents_predict_as_raw(stub: Any, bc_frame: pd.DataFrame, store: Store) -> None:
    request = pb.ModelInferRequest(model_name="bc-linear")
    for name in bc_frame.columns:
        tensor = request.inputs.add(name=name, datatype="FP64", shape=[len(bc_frame)])
        tensor.contents.fp64_contents.extend(bc_frame[name].tolist())
    response = stub.ModelInfer(request, timeout=10)
    predictions = np.frombuffer(response.raw_output_contents[0], dtype="<i8")
    expected = pyfunc_predict(store, "models:/bc-linear@champion", bc_frame)
    np.testing.assert_array_equal(predictions, expected)


def test_every_datatype_and_the_token(generic_server: Server, store: Store) -> None:
    frame = pd.DataFrame(RECORDS_GENERIC)
    client = triton.InferenceServerClient(grpc_url(generic_server))
    try:
        with pytest.raises(InferenceServerException) as refused:
            client.infer("generic", column_inputs(frame))
        token = {"authorization": f"Bearer {generic_server.token}"}
        result = client.infer("generic", column_inputs(frame), headers=token)
    finally:
        client.close()
    assert refused.value.status() == "StatusCode.UNAUTHENTICATED"
    expected = pyfunc_predict(store, "models:/generic@champion", frame)
    np.testing.assert_allclose(result.as_numpy("predictions"), expected)


def test_two_workers_share_the_grpc_port(mlp_server: Server, store: Store) -> None:
    frame = mixed_frame().drop(columns=["churned"]).dropna().iloc[:5]
    frame[["city", "plan"]] = frame[["city", "plan"]].astype(object)
    client = triton.InferenceServerClient(grpc_url(mlp_server))
    try:
        results = [client.infer("mixed-mlp", column_inputs(frame)) for _ in range(4)]
    finally:
        client.close()
    expected = pyfunc_predict(store, "models:/mixed-mlp@champion", frame)
    for result in results:
        np.testing.assert_array_equal(result.as_numpy("predictions"), expected)


def fp64_request(name: str, shape: list[int], raw: bytes, model: str = "bc-linear") -> Any:
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name=name, datatype="FP64", shape=shape)
    request.raw_input_contents.append(raw)
    return request


@pytest.mark.parametrize(
    ("request_", "code", "message"),
    [
        (fp64_request("input-0", [1, 30], bytes(200)), "INVALID_ARGUMENT", "'input-0': 200 bytes"),
        (fp64_request("input-0", [1, 29], bytes(232)), "INVALID_ARGUMENT", "needs 30 columns"),
        (fp64_request("mean radius", [2], bytes(16)), "INVALID_ARGUMENT", "missing column"),
        (fp64_request("input-0", [1, 30], bytes(240), "nope"), "NOT_FOUND", "unknown model"),
        (pb.ModelInferRequest(model_name="bc-linear"), "INVALID_ARGUMENT", "no inputs"),
    ],
    ids=["raw-size", "width", "missing-column", "unknown-model", "no-inputs"],
)
def test_bad_requests_get_the_status_http_would_give(
    stub: Any, request_: Any, code: str, message: str
) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        stub.ModelInfer(request_, timeout=10)
    assert refused.value.code() == getattr(grpc.StatusCode, code)
    assert message in refused.value.details()


def test_message_over_the_body_limit_is_refused(stub: Any) -> None:
    request = fp64_request("input-0", [1000, 30], bytes(240_000))  # the limit is 200,000 bytes
    with pytest.raises(grpc.RpcError) as refused:
        stub.ModelInfer(request, timeout=10)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_calls_are_counted_with_http_requests(
    client: triton.InferenceServerClient, linear_server: Server, bc_frame: pd.DataFrame
) -> None:
    client.infer("bc-linear", column_inputs(bc_frame))
    assert grpc_answers(linear_server).get("200", 0) >= 1


def test_a_call_its_client_gave_up_on_is_counted_as_499(
    generic_server: Server, bc_frame: pd.DataFrame
) -> None:
    """A call waiting behind a slow prediction when its deadline passes is cancelled by gRPC
    in the server: it counts as a client's 499, never as a server error."""
    slow = {"dataframe_records": RECORDS_GENERIC[:1], "params": {"sleep_s": 0.8}}
    frame = pd.DataFrame(RECORDS_GENERIC[:1])
    token = {"authorization": f"Bearer {generic_server.token}"}
    client = triton.InferenceServerClient(grpc_url(generic_server))
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(generic_server.post, "/invocations", slow)
        time.sleep(0.2)  # the slow request holds the predict thread; the call queues behind it
        with pytest.raises(InferenceServerException) as gave_up:
            client.infer("generic", column_inputs(frame), headers=token, client_timeout=0.2)
        assert busy.result().status == 200
    client.close()
    assert gave_up.value.status() == "StatusCode.DEADLINE_EXCEEDED"
    counted = grpc_answers(generic_server)
    assert counted.get("499") == 1 and "500" not in counted, counted


INFER = "/inference.GRPCInferenceService/ModelInfer"


def grpc_answers(server: Server) -> dict[str, float]:
    """ModelInfer calls so far, by the status they were counted under."""
    calls = samples(server, "mlops_http_requests_total")
    return {s.labels["status"]: s.value for s in calls if s.labels["endpoint"] == INFER}


@pytest.mark.slow
def test_sigterm_turns_readiness_off_and_serves_through_the_drain(
    store: Store, tmp_path: Path, bc_frame: pd.DataFrame
) -> None:
    drain_s = 2.0
    overrides = [f"serve.drain_s={drain_s}", "serve.drain_timeout_s=5"]
    server = start_server(store.uri, "models:/bc-linear@champion", tmp_path, overrides)
    client = triton.InferenceServerClient(grpc_url(server))
    try:
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        time.sleep(0.2)
        ready = client.is_server_ready()
        answered = []
        while time.monotonic() < signalled + drain_s - 0.5:
            answered.append(
                client.infer("bc-linear", column_inputs(bc_frame)).as_numpy("predictions")
            )
        code = server.process.wait(timeout=drain_s + 15)
        with pytest.raises(InferenceServerException):  # the port is closed with the process
            client.is_server_live()
    finally:
        client.close()
        server.stop()
    assert not ready and answered and code == 0
