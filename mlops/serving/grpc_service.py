"""The Open Inference Protocol over gRPC (`inference.GRPCInferenceService`, proto/) on
`serve.grpc_port`.

It runs on grpc.aio in the HTTP server's own event loop, started by the app's lifespan, so the
model manager (readiness, reload), batcher, validation and metrics are the HTTP server's: a tensor
becomes a `v2.Tensor` (typed `contents` or `raw_input_contents`) and takes the v2 REST road from
there; outputs go back as `raw_output_contents`. With several workers each binds the port with
SO_REUSEPORT, as they share the HTTP socket. Errors carry the status code matching HTTP's:
400 INVALID_ARGUMENT, 401 UNAUTHENTICATED, 404 NOT_FOUND, 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED;
messages over `max_body_bytes` get RESOURCE_EXHAUSTED from gRPC itself. Calls are counted in the
HTTP request metrics under the status HTTP would give; one its client cancelled (or whose
deadline passed) under 499, as nginx counts a request its client gave up on, not as a 500.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import numpy as np

from mlops.errors import ConfigError
from mlops.serving import v2
from mlops.serving.errors import InputError, NotReady, RequestError
from mlops.serving.guard import SHED_MESSAGE
from mlops.serving.http import Services, check_bearer, predict
from mlops.serving.model import ServedModel
from mlops.serving.proto import grpc_predict_v2_pb2 as pb
from mlops.serving.proto.grpc_predict_v2_pb2_grpc import (
    GRPCInferenceServiceServicer,
    add_GRPCInferenceServiceServicer_to_server,
)
from mlops.serving.schema import InputSchema, numpy_v2_datatype
from mlops.serving.tensors import raw_from_array, text_of, values_from_raw
from mlops.serving.validate import Table, check_row_count, number_matrix

log = logging.getLogger(__name__)

SERVICE = "/inference.GRPCInferenceService/"
CLIENT_CLOSED = 499  # the status a call cancelled by its client is counted under (nginx's)
_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
# The InferTensorContents field that holds each datatype (FP16 only travels raw).
_CONTENTS = {
    "BOOL": "bool_contents",
    "INT64": "int64_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
    **{f"INT{n}": "int_contents" for n in (8, 16, 32)},
    **{f"UINT{n}": "uint_contents" for n in (8, 16, 32)},
}

R = TypeVar("R")
Handler = Callable[["InferenceService", Any, Any], Awaitable[R]]


def rpc(handler: Handler[R]) -> Handler[R]:
    """Counts the call as HTTP requests are counted (the status HTTP would give) and turns a
    `RequestError` into its status code, anything else into INTERNAL without details."""
    endpoint = SERVICE + handler.__name__

    async def answer(service: InferenceService, request: Any, context: Any) -> R:
        metrics, started, status = service.found.metrics, time.perf_counter(), 500
        code, message = grpc.StatusCode.INTERNAL, "internal server error"
        try:
            reply = await handler(service, request, context)
            status = 200
            return reply
        except RequestError as error:
            status, code, message = error.status, _CODES.get(error.status, code), error.message
            metrics.refused(error)
        except asyncio.CancelledError:  # the client cancelled the call, or its deadline passed
            status = CLIENT_CLOSED
            raise
        except Exception:
            log.exception("gRPC %s failed", handler.__name__)
        finally:
            metrics.requests.labels(endpoint, "GRPC", str(status)).inc()
            metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
        await context.abort(code, message)
        raise AssertionError("context.abort returned")  # it raises; this line is never reached

    answer.__name__ = handler.__name__
    return answer


class InferenceService(GRPCInferenceServiceServicer):  # type: ignore[misc]  # generated, untyped
    def __init__(self, found: Services) -> None:
        self.found = found

    @rpc
    async def ServerLive(self, request: Any, context: Any) -> Any:  # noqa: N802 (the spec's name)
        return pb.ServerLiveResponse(live=True)

    @rpc
    async def ServerReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        return pb.ServerReadyResponse(ready=self.found.models.ready)

    @rpc
    async def ModelReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        ready = v2.model_is_ready(self.found, request.name, request.version or None)
        return pb.ModelReadyResponse(ready=ready)

    @rpc
    async def ServerMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        return pb.ServerMetadataResponse(**v2.SERVER)

    @rpc
    async def ModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        self._check_token(context)
        model = self.found.models.require()
        v2.check_model(request.name, request.version or None, model)
        found = v2.metadata(model)
        tensors = {
            key: [pb.ModelMetadataResponse.TensorMetadata(**t) for t in found[key]]
            for key in ("inputs", "outputs")
        }
        return pb.ModelMetadataResponse(
            name=found["name"], versions=found["versions"], platform=found["platform"], **tensors
        )

    @rpc
    async def ModelInfer(self, request: Any, context: Any) -> Any:  # noqa: N802
        metadata = self._check_token(context)
        if self.found.batcher.full():
            raise NotReady(SHED_MESSAGE, "shed")
        metrics = self.found.metrics
        metrics.in_flight.inc()
        try:
            max_rows = self.found.settings.serve.max_rows
            picked = self.found.models.pick(metadata, request.model_version or None)
            model, prediction, infer = await predict(
                self.found,
                picked,
                lambda deadline: _received(request),
                lambda message: int(message.ByteSize()),
                lambda message, model: decode(message, model, max_rows),
                inline=False,  # see Batcher._call
            )
        finally:
            metrics.in_flight.dec()
        response = pb.ModelInferResponse(
            model_name=model.ref.name, model_version=model.ref.version, id=infer.id or ""
        )
        for name, array in v2.output_arrays(infer.outputs, prediction):
            datatype = numpy_v2_datatype(array.dtype)
            response.outputs.add(name=name, datatype=datatype, shape=array.shape)
            response.raw_output_contents.append(raw_from_array(array, datatype))
        return response

    def _check_token(self, context: Any) -> dict[str, Any]:
        """The call's metadata (routing keys too), once its bearer token passed."""
        metadata = dict(context.invocation_metadata() or ())
        check_bearer(metadata.get("authorization", ""), self.found.settings.api_token)
        return metadata


async def _received(message: R) -> R:
    return message  # gRPC has read and size-checked the whole message already


def decode(request: Any, model: ServedModel, max_rows: int) -> v2.InferRequest:
    v2.check_model(request.model_name, request.model_version or None, model)
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        message = f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs"
        raise InputError(message, "shape")
    table = _fp64_columns(request, model.schema, max_rows) if raw else None
    if table is None:
        inputs = enumerate(request.inputs)
        tensors = [_tensor(item, raw[i] if raw else None) for i, item in inputs]
        if not tensors:
            raise InputError("request has no inputs", "bad_format")
        # Every value has its tensor's datatype here (no JSON booleans among numbers): plain.
        table = v2.table_from_tensors(tensors, model.schema, max_rows, plain=True)
    names = tuple(output.name for output in request.outputs)
    outputs = v2.check_outputs(names, model.supports_probabilities)
    return v2.infer_request(table, outputs, request.id or None, frozenset())


def _fp64_columns(request: Any, schema: InputSchema, max_rows: int) -> Table | None:
    """The usual raw request to an all-numeric model (one FP64 tensor of shape [n] per column,
    as tritonclient sends a frame's columns) as one array: tensor by tensor costs 4 us a column.
    None sends anything else down the general road, which names the problem."""
    inputs, raw = request.inputs, request.raw_input_contents
    if not schema.numeric or not inputs:
        return None
    n_rows = len(raw[0]) // 8
    plain = all(
        item.datatype == "FP64" and list(item.shape) == [n_rows] and len(data) == 8 * n_rows
        for item, data in zip(inputs, raw, strict=True)
    )
    if not plain or not all(item.name in schema.index for item in inputs):
        return None
    check_row_count(n_rows, max_rows)
    columns = np.frombuffer(b"".join(raw), "<f8").reshape(len(raw), n_rows)
    return number_matrix(schema, [item.name for item in inputs], columns, by_column=True)


def _tensor(item: Any, raw: bytes | None) -> v2.Tensor:
    name, datatype, shape = item.name, item.datatype.upper()[:16], list(item.shape)
    if not shape or any(size < 0 for size in shape):
        raise InputError(f"input {name[:64]!r}: shape must be a list of sizes", "bad_format")
    if raw is not None:
        flat = values_from_raw(name[:64], datatype, raw, math.prod(shape))
    elif datatype not in _CONTENTS:
        message = f"input {name[:64]!r}: datatype {datatype} needs raw_input_contents"
        raise InputError(message, "wrong_type")
    else:
        flat = list(getattr(item.contents, _CONTENTS[datatype]))
        if datatype == "BYTES":
            flat = [text_of(name[:64], value) for value in flat]
    return v2.check_tensor(name, shape, datatype, flat)


async def start_grpc(found: Services) -> Any:
    """The started grpc.aio server, in the running event loop; `ConfigError` if the port is
    taken. Stop it with `await server.stop(grace_s)`."""
    settings, serve = found.settings, found.settings.serve
    options = [
        ("grpc.max_receive_message_length", serve.max_body_bytes),
        # gRPC sets SO_REUSEPORT by default: with one process a taken port must be an error.
        ("grpc.so_reuseport", int(serve.workers > 1)),
    ]
    server = grpc.aio.server(options=options)
    add_GRPCInferenceServiceServicer_to_server(InferenceService(found), server)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    address = f"{host}:{settings.grpc_port}"
    try:
        server.add_insecure_port(address)
    except RuntimeError as err:
        raise ConfigError(f"cannot listen for gRPC on {address}: {err}") from None
    await server.start()
    log.info("gRPC (Open Inference Protocol) on %s", address)
    return server
