"""Open Inference Protocol v2 (KServe, Triton, MLServer clients) on the same model and batcher.

Inputs are either one tensor per signature column (MLServer's pandas codec: shape [n] or [n, 1],
named after the column) or one 2-D tensor of shape [n, columns] in signature column order. Data
may be flat (row-major, as the spec says) or nested. Outputs: `predictions` (shape [n]) and, for
classifiers when requested in `outputs`, `probabilities` (shape [n, classes], columns in the order
of the metadata's `classes` parameter). Model metadata comes from the MLflow signature. Errors are
`{"error": "..."}`. Tensor data is JSON, or raw bytes after a JSON header (the binary tensor data
extension, layout in tensors.py), both ways. The decoding and validation here also serve the gRPC
service (grpc_service.py).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from math import prod
from typing import Any, NamedTuple

import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mlops.serving.errors import InputError, NotFound
from mlops.serving.http import (
    Decoded,
    Services,
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
from mlops.serving.tensors import raw_from_array, values_from_raw
from mlops.serving.validate import (
    Table,
    check_row_count,
    may_hold_booleans,
    number_matrix,
    table_from_number_columns,
    table_from_rows,
)

SERVER: dict[str, Any] = {
    "name": "mlops-model-server",
    "version": "1",
    "extensions": ["binary_tensor_data"],
}
BINARY_HEADER = "Inference-Header-Content-Length"
OUTPUTS = ("predictions", "probabilities")
_NUMERIC = {"FP16", "FP32", "FP64"} | {f"{u}INT{n}" for u in ("", "U") for n in (8, 16, 32, 64)}
_NUMBERS = frozenset({int, float})
_LIST, _STR, _TENSOR_KEYS = {list}, {str}, {4}  # name, shape, datatype, data
_PLAIN, _PROBABILITIES = Options(), Options(probabilities=True)  # shared: batches compare them
_COMPATIBLE = {"number": _NUMERIC, "integer": _NUMERIC, "string": {"BYTES"}, "boolean": {"BOOL"}}


@dataclass(frozen=True)
class InferRequest(Decoded):
    id: str | None = None
    outputs: tuple[str, ...] = ("predictions",)
    binary: frozenset[str] = frozenset()  # outputs answered as raw bytes


class Tensor(NamedTuple):  # a NamedTuple: built once per input, a dataclass costs 1 us more
    name: str
    shape: list[int]
    datatype: str
    flat: list[Any]  # row-major


def decode(
    body: bytes, header_length: str | None, schema: InputSchema, max_rows: int, classifier: bool
) -> InferRequest:
    """A JSON body, or with `header_length` (binary tensor data extension) a JSON header followed
    by the inputs whose `parameters.binary_data_size` says how many bytes of the rest are theirs."""
    header, binary = _split(body, header_length)
    payload = parse_json(header)
    inputs = payload.get("inputs") if isinstance(payload, dict) else None
    if not isinstance(inputs, list) or not inputs:
        raise InputError('request body must be {"inputs": [tensor, ...]}', "bad_format")
    table = None if binary else _number_columns(inputs, schema, max_rows)
    if table is None:
        plain = not may_hold_booleans(header)
        tensors, offset = [], 0
        for item in inputs:
            tensor, offset = _tensor(item, binary, offset)
            tensors.append(tensor)
        if offset != len(binary):
            message = f"input {tensors[-1].name[:64]!r}: binary_data_size of the inputs add up to "
            raise InputError(f"{message}{offset} bytes, the body has {len(binary)}", "shape")
        table = table_from_tensors(tensors, schema, max_rows, plain)
    outputs, binary_outputs = _requested_outputs(payload, classifier)
    request_id = payload.get("id")
    request_id = None if request_id is None else str(request_id)
    return infer_request(table, outputs, request_id, binary_outputs)


def infer_request(
    table: Table, outputs: tuple[str, ...], request_id: str | None, binary: frozenset[str]
) -> InferRequest:
    options = _PROBABILITIES if "probabilities" in outputs else _PLAIN
    return InferRequest(table, options, request_id, outputs, binary)


def _number_columns(inputs: list[Any], schema: InputSchema, max_rows: int) -> Table | None:
    """The usual request to an all-numeric model, one JSON tensor of shape [n] per column,
    checked in bulk: input by input (`_tensor`, `_columns`) costs 1.5 us a column, more than the
    rest of a 1-row request. None sends anything else down that general road, which names the
    problem; the values are checked as rows are (validate.table_from_rows)."""
    if not schema.numeric or len(inputs) != len(schema.columns):
        return None  # the matrix layout, or optional columns left out: the general road
    try:
        names = [item["name"] for item in inputs]
        shapes = [item["shape"] for item in inputs]
        datatypes = {item["datatype"] for item in inputs}
        columns = [item["data"] for item in inputs]
        keys = set(map(len, inputs))
    except (TypeError, KeyError):  # not objects, a key missing
        return None
    n_rows = len(columns[0]) if type(columns[0]) is list else -1
    # Checked a list at a time (C loops): a Python loop over 30 inputs would cost more than the
    # rest of the request.
    shaped = shapes.count([n_rows]) == len(shapes) and set(map(type, columns)) == _LIST
    if not (shaped and set(map(len, columns)) == {n_rows} and datatypes <= _NUMERIC):
        return None  # other shapes or datatypes: the general road names the problem
    if keys != _TENSOR_KEYS or set(map(type, names)) != _STR:
        return None  # parameters or other keys, or a name that is not a string
    check_row_count(n_rows, max_rows)
    flat = list(itertools.chain.from_iterable(columns))
    if not set(map(type, flat)) <= _NUMBERS:  # numpy would read true as 1.0
        return None
    # One flat list makes an array several times quicker than 30 short ones.
    matrix = np.array(flat).reshape(len(columns), n_rows)
    return number_matrix(schema, names, matrix, by_column=True)


def _split(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    if header_length is None:
        return body, memoryview(b"")
    if not header_length.isdigit() or int(header_length) > len(body):
        message = f"{BINARY_HEADER} {header_length[:20]!r} is not a length within the body"
        raise InputError(f"{message} of {len(body)} bytes", "bad_format")
    size = int(header_length)
    return body[:size], memoryview(body)[size:]


def _tensor(item: Any, binary: memoryview, offset: int) -> tuple[Tensor, int]:
    """One input; the checks are written for speed: a 1-row request of 30 columns runs this
    30 times, and it was the largest cost of such a request."""
    if type(item) is not dict or type(item.get("name")) is not str:
        message = "each input must be an object with name, shape, datatype and data"
        raise InputError(message, "bad_format")
    name, shape, datatype = item["name"], item.get("shape"), item.get("datatype")
    if type(shape) is not list or not shape or not all(type(d) is int and d >= 0 for d in shape):
        raise InputError(f"input {name[:64]!r}: shape must be a list of sizes", "bad_format")
    if type(datatype) is not str:
        raise InputError(f"input {name[:64]!r}: datatype and data are required", "bad_format")
    parameters, data = item.get("parameters"), item.get("data")
    size = None if parameters is None else _binary_size(name, parameters)
    if size is None:
        if type(data) is not list:
            raise InputError(f"input {name[:64]!r}: datatype and data are required", "bad_format")
        flat = _flatten(data) if data and type(data[0]) is list else data
    elif offset + size > len(binary):
        message = f"input {name[:64]!r}: binary_data_size {size} runs past the end of the body"
        raise InputError(message, "shape")
    else:
        count = prod(shape)
        flat = values_from_raw(name[:64], datatype.upper(), binary[offset : offset + size], count)
        offset += size
    return check_tensor(name, shape, datatype.upper()[:16], flat), offset


def _binary_size(name: str, parameters: Any) -> int | None:
    if type(parameters) is not dict or "binary_data_size" not in parameters:
        return None
    size = parameters["binary_data_size"]
    if type(size) is not int or size < 0:
        message = f"input {name[:64]!r}: parameters.binary_data_size must be a byte count"
        raise InputError(message, "bad_format")
    return size


def check_tensor(name: str, shape: list[int], datatype: str, flat: list[Any]) -> Tensor:
    if len(flat) != (shape[0] if len(shape) == 1 else prod(shape)):
        message = f"input {name[:64]!r}: {len(flat)} values do not fill shape {shape}"
        raise InputError(message, "shape")
    return Tensor(name, shape, datatype, flat)


def _flatten(data: list[Any]) -> list[Any]:
    if all(type(row) is list for row in data) and not any(
        type(value) is list for row in data for value in row
    ):
        return list(itertools.chain.from_iterable(data))  # the usual 2-D nesting, fast
    flat: list[Any] = []
    for item in data:
        flat.extend(_flatten(item) if isinstance(item, list) else [item])
    return flat


def table_from_tensors(
    tensors: list[Tensor], schema: InputSchema, max_rows: int, plain: bool
) -> Table:
    """One tensor per column, or one 2-D tensor of every column; `plain`: no JSON booleans."""
    if len(tensors) == 1 and len(tensors[0].shape) == 2 and tensors[0].name not in schema.index:
        return _matrix(tensors[0], schema, max_rows, plain)  # see validate.table_from_rows
    return _columns(tensors, schema, max_rows, plain)


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


def _columns(tensors: list[Tensor], schema: InputSchema, max_rows: int, plain: bool) -> Table:
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
    return table_from_number_columns(schema, columns, n_rows, plain)


def _requested_outputs(
    payload: dict[str, Any], classifier: bool
) -> tuple[tuple[str, ...], frozenset[str]]:
    """The outputs asked for, and which of them as binary data (`parameters.binary_data` on an
    output, else the request's `parameters.binary_data_output`)."""
    outputs = payload.get("outputs")
    default = _flag(payload.get("parameters"), "binary_data_output", False)
    if outputs is None or outputs == []:
        return ("predictions",), frozenset(("predictions",) if default else ())
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise InputError('outputs must be a list of {"name": ...}', "bad_format")
    names = check_outputs(tuple(str(o.get("name")) for o in outputs), classifier)
    flags = [_flag(o.get("parameters"), "binary_data", default) for o in outputs]
    return names, frozenset(n for n, binary in zip(names, flags, strict=False) if binary)


def _flag(parameters: Any, key: str, default: bool) -> bool:
    value = parameters.get(key, default) if isinstance(parameters, dict) else default
    if not isinstance(value, bool):
        raise InputError(f"parameters.{key} must be true or false", "bad_params")
    return value


def check_outputs(names: tuple[str, ...], classifier: bool) -> tuple[str, ...]:
    for name in names:
        if name not in OUTPUTS or (name == "probabilities" and not classifier):
            raise InputError(f"unknown output {name[:64]!r}", "bad_params")
    return names or ("predictions",)


def output_arrays(names: tuple[str, ...], prediction: Prediction) -> list[tuple[str, np.ndarray]]:
    arrays = []
    if "predictions" in names:
        arrays.append(("predictions", np.asarray(prediction.values)))
    if "probabilities" in names and prediction.probabilities is not None:
        probabilities = np.asarray(prediction.probabilities, dtype=np.float64)
        arrays.append(("probabilities", probabilities))
    return arrays


def encode(
    request: InferRequest, model: ServedModel, prediction: Prediction
) -> tuple[bytes, int | None]:
    """The answer body, and the length of its JSON header when binary outputs follow it."""
    outputs, chunks = [], []
    for name, array in output_arrays(request.outputs, prediction):
        datatype = numpy_v2_datatype(array.dtype)
        tensor: dict[str, Any] = {"name": name, "shape": list(array.shape), "datatype": datatype}
        if name in request.binary:
            raw = raw_from_array(array, datatype)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = jsonable(array.ravel())
        outputs.append(tensor)
    body: dict[str, Any] = {"model_name": model.ref.name, "model_version": model.ref.version}
    if request.id is not None:
        body["id"] = request.id
    body["outputs"] = outputs
    header = dumps(body)
    return (b"".join((header, *chunks)), len(header)) if chunks else (header, None)


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
    name = request.path_params["name"]
    ok = model_is_ready(services(request), name, request.path_params.get("version"))
    return json_response(dumps({"name": name, "ready": ok}), 200 if ok else 503)


def model_is_ready(found: Services, name: str, version: str | None) -> bool:
    if name != found.settings.source.name:
        raise NotFound(f"unknown model {name[:64]!r}")
    model = found.models.current
    return found.models.ready and model is not None and version in (None, model.ref.version)


async def infer(request: Request) -> Response:
    max_rows = services(request).settings.serve.max_rows
    header_length = request.headers.get(BINARY_HEADER)

    def decode_for(body: bytes, model: ServedModel) -> InferRequest:
        _check_path(request, model)
        classifier = model.supports_probabilities
        return decode(body, header_length, model.schema, max_rows, classifier)

    model, prediction, infer_request = await predict_request(request, decode_for)
    body, json_length = encode(infer_request, model, prediction)
    headers = version_headers(model)
    if json_length is None:
        return json_response(body, headers=headers)
    headers[BINARY_HEADER] = str(json_length)
    return Response(body, headers=headers, media_type="application/octet-stream")


def _check_path(request: Request, model: ServedModel) -> None:
    check_model(request.path_params["name"], request.path_params.get("version"), model)


def check_model(name: str, version: str | None, model: ServedModel) -> None:
    """404 unless `name` (and `version`, when given) is the model being served."""
    if name != model.ref.name:
        raise NotFound(f"unknown model {name[:64]!r}")
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
