"""Open Inference Protocol v2 (KServe, Triton, MLServer clients) on the same model and batcher.

Inputs are either one tensor per signature column (MLServer's pandas codec: shape [n] or [n, 1],
named after the column) or one 2-D tensor of shape [n, columns] in signature column order. Data
may be flat (row-major, as the spec says) or nested. Outputs: `predictions` (shape [n]) and, for
classifiers when requested in `outputs`, `probabilities` (shape [n, classes], columns in the order
of the metadata's `classes` parameter). Model metadata comes from the MLflow signature. Errors are
`{"error": "..."}`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mlops.serving.errors import InputError, NotFound
from mlops.serving.http import (
    Decoded,
    check_token,
    dumps,
    json_response,
    jsonable,
    parse_json,
    predict_request,
    services,
    version_headers,
)
from mlops.serving.lifecycle import ModelManager
from mlops.serving.model import Options, Prediction, ServedModel
from mlops.serving.schema import InputSchema, numpy_v2_datatype
from mlops.serving.validate import (
    Table,
    check_row_count,
    may_hold_booleans,
    table_from_columns,
    table_from_rows,
)

SERVER = {"name": "mlops-model-server", "version": "1", "extensions": []}
OUTPUTS = ("predictions", "probabilities")
_NUMERIC = {"FP16", "FP32", "FP64"} | {f"{u}INT{n}" for u in ("", "U") for n in (8, 16, 32, 64)}
_PLAIN, _PROBABILITIES = Options(), Options(probabilities=True)  # shared: batches compare them
_COMPATIBLE = {"number": _NUMERIC, "integer": _NUMERIC, "string": {"BYTES"}, "boolean": {"BOOL"}}


@dataclass(frozen=True)
class InferRequest(Decoded):
    id: str | None = None
    outputs: tuple[str, ...] = ("predictions",)


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: list[int]
    datatype: str
    flat: list[Any]  # row-major


def decode(body: bytes, schema: InputSchema, max_rows: int, classifier: bool) -> InferRequest:
    payload = parse_json(body)
    inputs = payload.get("inputs") if isinstance(payload, dict) else None
    if not isinstance(inputs, list) or not inputs:
        raise InputError('request body must be {"inputs": [tensor, ...]}', "bad_format")
    tensors = [_tensor(item) for item in inputs]
    if len(tensors) == 1 and len(tensors[0].shape) == 2 and tensors[0].name not in schema.index:
        plain = not may_hold_booleans(body)  # see validate.table_from_rows
        table = _matrix(tensors[0], schema, max_rows, plain)
    else:
        table = _columns(tensors, schema, max_rows)
    outputs = _requested_outputs(payload.get("outputs"), classifier)
    options = _PROBABILITIES if "probabilities" in outputs else _PLAIN
    request_id = payload.get("id")
    return InferRequest(table, options, None if request_id is None else str(request_id), outputs)


def _tensor(item: Any) -> Tensor:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        message = "each input must be an object with name, shape, datatype and data"
        raise InputError(message, "bad_format")
    name = item["name"][:64]
    shape, datatype, data = item.get("shape"), item.get("datatype"), item.get("data")
    sizes = isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)
    if not sizes or not shape:
        raise InputError(f"input {name!r}: shape must be a list of sizes", "bad_format")
    if not isinstance(datatype, str) or not isinstance(data, list):
        raise InputError(f"input {name!r}: datatype and data are required", "bad_format")
    flat = _flatten(data) if data and isinstance(data[0], list) else data
    if len(flat) != math.prod(shape):
        message = f"input {name!r}: {len(flat)} values do not fill shape {shape}"
        raise InputError(message, "shape")
    return Tensor(item["name"], shape, datatype.upper()[:16], flat)


def _flatten(data: list[Any]) -> list[Any]:
    if all(type(row) is list for row in data) and not any(
        type(value) is list for row in data for value in row
    ):
        return list(itertools.chain.from_iterable(data))  # the usual 2-D nesting, fast
    flat: list[Any] = []
    for item in data:
        flat.extend(_flatten(item) if isinstance(item, list) else [item])
    return flat


def _matrix(tensor: Tensor, schema: InputSchema, max_rows: int, plain: bool) -> Table:
    name, (n_rows, width) = tensor.name[:64], tensor.shape
    if width != len(schema.columns):
        message = f"input {name!r}: a 2-D tensor needs {len(schema.columns)} columns, got {width}"
        raise InputError(message, "shape")
    if schema.numeric and tensor.datatype not in _NUMERIC:
        message = f"input {name!r}: datatype must be numeric, got {tensor.datatype}"
        raise InputError(message, "wrong_type")
    check_row_count(n_rows, max_rows)
    flat = tensor.flat
    rows = [flat[i * width : (i + 1) * width] for i in range(n_rows)]
    return table_from_rows(schema, schema.names, rows, plain)


def _columns(tensors: list[Tensor], schema: InputSchema, max_rows: int) -> Table:
    columns: dict[str, list[Any]] = {}
    for tensor in tensors:
        name = tensor.name
        if name not in schema.index:
            message = f"unknown input {name[:64]!r}: inputs are the model's columns"
            raise InputError(message, "unknown_input")
        column = schema.columns[schema.index[name]]
        if len(tensor.shape) > 2 or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
            message = f"input {name!r}: shape must be [n] or [n, 1], got {tensor.shape}"
            raise InputError(message, "shape")
        allowed = _COMPATIBLE.get(column.kind)
        if allowed is not None and tensor.datatype not in allowed:
            message = f"input {name!r}: datatype {tensor.datatype} does not fit {column.dtype}"
            raise InputError(message, "wrong_type")
        columns[name] = tensor.flat
    n_rows = len(next(iter(columns.values())))
    check_row_count(n_rows, max_rows)
    return table_from_columns(schema, columns, n_rows)


def _requested_outputs(outputs: Any, classifier: bool) -> tuple[str, ...]:
    if outputs is None:
        return ("predictions",)
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise InputError('outputs must be a list of {"name": ...}', "bad_format")
    names = tuple(str(o.get("name")) for o in outputs)
    for name in names:
        if name not in OUTPUTS or (name == "probabilities" and not classifier):
            raise InputError(f"unknown output {name[:64]!r}", "bad_params")
    return names or ("predictions",)


def encode(request: InferRequest, model: ServedModel, prediction: Prediction) -> bytes:
    outputs = []
    if "predictions" in request.outputs:
        outputs.append(_output("predictions", np.asarray(prediction.values)))
    if "probabilities" in request.outputs and prediction.probabilities is not None:
        probabilities = np.asarray(prediction.probabilities, dtype=np.float64)
        outputs.append(_output("probabilities", probabilities))
    body: dict[str, Any] = {"model_name": model.ref.name, "model_version": model.ref.version}
    if request.id is not None:
        body["id"] = request.id
    body["outputs"] = outputs
    return dumps(body)


def _output(name: str, array: np.ndarray) -> dict[str, Any]:
    return {
        "name": name,
        "shape": list(array.shape),
        "datatype": numpy_v2_datatype(array.dtype),
        "data": jsonable(array.ravel()),
    }


def metadata(model: ServedModel) -> dict[str, Any]:
    columns = model.schema.columns
    outputs = [{"name": "predictions", "datatype": model.datatype, "shape": [-1]}]
    parameters: dict[str, Any] = {"content_type": "pd"}
    if model.supports_probabilities:
        shape = [-1, len(model.classes)]
        outputs.append({"name": "probabilities", "datatype": "FP64", "shape": shape})
        parameters["classes"] = list(model.classes)
    return {
        "name": model.ref.name,
        "versions": [model.ref.version],
        "platform": "mlflow",
        "inputs": [{"name": c.name, "datatype": c.v2_datatype, "shape": [-1]} for c in columns],
        "outputs": outputs,
        "parameters": parameters,
    }


async def server_metadata(request: Request) -> Response:
    return json_response(dumps(SERVER))


LIVE = b'{"live":true}'  # liveness: this process answers HTTP; nothing else is checked


def readiness(models: ModelManager) -> tuple[int, bytes]:
    """The status and body of a readiness answer, here and on the probe port (probes.py)."""
    ok = models.ready
    return (200 if ok else 503), dumps({"ready": ok})


async def live(request: Request) -> Response:
    return json_response(LIVE)


async def ready(request: Request) -> Response:
    status, body = readiness(services(request).models)
    return json_response(body, status)


async def model_metadata(request: Request) -> Response:
    found = services(request)
    check_token(request, found.settings.api_token)
    model = found.models.require()
    _check_path(request, model)
    return json_response(dumps(metadata(model)), headers=version_headers(model))


async def model_ready(request: Request) -> Response:
    found = services(request)
    name = request.path_params["name"]
    if name != found.settings.source.name:
        raise NotFound(f"unknown model {name[:64]!r}")
    model = found.models.current
    version = request.path_params.get("version")
    ok = found.models.ready and model is not None and version in (None, model.ref.version)
    return json_response(dumps({"name": name, "ready": ok}), 200 if ok else 503)


async def infer(request: Request) -> Response:
    max_rows = services(request).settings.serve.max_rows

    def decode_for(body: bytes, model: ServedModel) -> InferRequest:
        _check_path(request, model)
        return decode(body, model.schema, max_rows, model.supports_probabilities)

    model, prediction, infer_request = await predict_request(request, decode_for)
    body = encode(infer_request, model, prediction)
    return json_response(body, headers=version_headers(model))


def _check_path(request: Request, model: ServedModel) -> None:
    name = request.path_params["name"]
    if name != model.ref.name:
        raise NotFound(f"unknown model {name[:64]!r}")
    version = request.path_params.get("version")
    if version is not None and version != model.ref.version:
        raise NotFound(
            f"model {name!r} version {version[:32]!r} is not served (serving {model.ref.version})"
        )


def routes() -> list[Route]:
    model = "/v2/models/{name}"
    versioned = "/v2/models/{name}/versions/{version}"
    return [
        Route("/v2", server_metadata),
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route(model, model_metadata),
        Route(versioned, model_metadata),
        Route(f"{model}/ready", model_ready),
        Route(f"{versioned}/ready", model_ready),
        Route(f"{model}/infer", infer, methods=["POST"]),
        Route(f"{versioned}/infer", infer, methods=["POST"]),
    ]
