"""What both protocols' endpoints share: services, body limits, tokens, JSON, the predict path.

`predict_request` is the one road from an HTTP request to predictions: token, readiness, the
version that answers (the champion, or a canary for its share), body (413 over `max_body_bytes`
whether Content-Length says so, lies or is absent), decode and validate (in a thread for large
bodies), batch queue (503 when full, 504 past the time budget); in shadow mode, a copy for the
canary once the champion's answer is on its way.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response

from mlops.serving.batching import Batcher
from mlops.serving.canary import Canary
from mlops.serving.errors import (
    BodyTimeout,
    BodyTooLarge,
    InputError,
    RequestError,
    Unauthorized,
)
from mlops.serving.lifecycle import ModelManager
from mlops.serving.metrics import Metrics
from mlops.serving.model import Options, Prediction, ServedModel
from mlops.serving.settings import ServerSettings
from mlops.serving.validate import Table, drift_counts

# Bodies above this are decoded in a thread so the event loop keeps answering meanwhile.
_THREAD_DECODE_BYTES = 65_536
_DRAIN_FACTOR = 4
JSON_TYPE = "application/json"
_COMPACT = (",", ":")
_HEADER_SAFE = " !#$&'()*+,-./:;=?@[]^_`{|}~"


@dataclass(frozen=True)
class Services:
    settings: ServerSettings
    models: ModelManager
    batcher: Batcher
    metrics: Metrics


@dataclass(frozen=True)
class Decoded:
    """What a protocol's decoder gives back: the validated rows and what else the model is asked."""

    table: Table
    options: Options


D = TypeVar("D", bound=Decoded)
P = TypeVar("P")  # a request's payload: the body's bytes, a gRPC message


def services(request: Request) -> Services:
    found: Services = request.state.services
    return found


def json_response(
    body: bytes, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(body, status_code=status, headers=headers, media_type=JSON_TYPE)


def check_token(request: Request, expected: str) -> None:
    check_bearer(request.headers.get("authorization", ""), expected)


def check_bearer(header: str, expected: str) -> None:
    """Bearer token check in constant time; a no-op when `expected` is empty."""
    if not expected:
        return
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), expected.encode()
    ):
        raise Unauthorized("missing or wrong bearer token")


async def read_body(request: Request, max_bytes: int, deadline: float) -> bytes:
    """The body, or 413 when it is over `max_bytes`. A body over the limit is still read to its
    end, and dropped, when it is at most `_DRAIN_FACTOR` times the limit: a client still sending
    when the server closes the connection gets a reset instead of the 413 (seen with Python's
    http.client). A larger body, or one still arriving at the deadline, is not waited for."""
    drain_limit = _DRAIN_FACTOR * max_bytes
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > drain_limit):
        raise _too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout_at(deadline):
            async for chunk in request.stream():
                size += len(chunk)
                if size > drain_limit:
                    break
                if size <= max_bytes:
                    chunks.append(chunk)
    except TimeoutError:
        if size <= max_bytes:  # past the limit already: that is the answer, not the time
            raise BodyTimeout("the request body did not arrive within the time budget") from None
    if size > max_bytes:
        raise _too_large(max_bytes)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(max_bytes: int) -> BodyTooLarge:
    return BodyTooLarge(f"request body is larger than the limit of {max_bytes} bytes")


async def predict_request(
    request: Request,
    decode: Callable[[bytes, ServedModel], D],
) -> tuple[ServedModel, Prediction, D]:
    """Token, readiness, body, decode + validate, batch queue: the predictions for `request`."""
    found = services(request)
    check_token(request, found.settings.api_token)
    model = found.models.pick(request.headers, request.path_params.get("version"))
    max_bytes = found.settings.serve.max_body_bytes
    return await predict(found, model, partial(read_body, request, max_bytes), len, decode)


async def predict(
    found: Services,
    model: ServedModel,
    receive: Callable[[float], Awaitable[P]],
    size: Callable[[P], int],
    decode: Callable[[P, ServedModel], D],
    inline: bool = True,
) -> tuple[ServedModel, Prediction, D]:
    """For `model` (the champion or the canary, `ModelManager.pick`): the payload
    `receive(deadline)` gives, decode + validate (in a thread when `size` says it is large),
    batch queue (`inline`: see Batcher.predict), the canary's judge and shadow copy: what HTTP
    and gRPC requests share."""
    config = found.settings.serve
    loop = asyncio.get_running_loop()
    deadline = loop.time() + config.request_timeout_s
    batcher = found.batcher
    batcher.admitted += 1  # admitted on arrival (guard.py, grpc_service.py)
    try:
        batcher.arriving += 1
        try:
            payload = await receive(deadline)
            if size(payload) < _THREAD_DECODE_BYTES:
                decoded = decode(payload, model)
            else:
                decoded = await asyncio.to_thread(decode, payload, model)
        finally:
            batcher.arriving -= 1
        model.check_options(decoded.options)
        table, options = decoded.table, decoded.options
        try:
            prediction = await batcher.predict(model, table, options, deadline, inline)
        except RequestError:  # 5xx: the model failed, or ran out of time
            found.models.answered(model, ok=False)
            raise
        found.models.answered(model, ok=True)
    finally:
        batcher.admitted -= 1
    canary = found.models.canary
    if canary is not None and model is not canary.model and canary.copies():
        batcher.spawn(_shadow(found, canary, decoded, prediction, deadline))
    # Rows predicted are checked against the profile on the loop's next turn: by then the answer
    # is written (the route sends it without waiting), so this is not part of its latency.
    loop.call_soon(_count_drift, found.metrics, model, decoded.table)
    return model, prediction, decoded


async def _shadow(
    found: Services, canary: Canary, decoded: Decoded, answer: Prediction, deadline: float
) -> None:
    """The canary predicts what the champion just answered: its latency and disagreements are
    recorded, its errors judged as in rotation; the client never waits for it."""
    started = time.perf_counter()
    try:
        copy = await found.batcher.predict(canary.model, decoded.table, decoded.options, deadline)
    except RequestError:
        found.models.answered(canary.model, ok=False)
        return
    found.models.answered(canary.model, ok=True)
    found.metrics.shadowed(canary.model, time.perf_counter() - started, answer, copy)


def _count_drift(metrics: Metrics, model: ServedModel, table: Table) -> None:
    for column, count in drift_counts(model.schema, table):
        metrics.drift.labels(model.ref.version, column).inc(count)


def version_headers(model: ServedModel) -> dict[str, str]:
    """Header values must be Latin-1; registered model names need not be ASCII."""
    name, version = (quote(text, safe=_HEADER_SAFE) for text in (model.ref.name, model.ref.version))
    return {"X-Model-Name": name, "X-Model-Version": version}


def parse_json(body: bytes) -> Any:
    """orjson first, several times faster than json; what it refuses goes through json, which
    accepts NaN and Infinity (as MLflow's server does: validation then names the column) and
    says where a real syntax error is."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise InputError("request body is not valid UTF-8", "invalid_json") from None
    except json.JSONDecodeError as err:
        where = f"line {err.lineno} column {err.colno}"
        raise InputError(
            f"request body is not valid JSON: {err.msg} at {where}", "invalid_json"
        ) from None
    except (ValueError, RecursionError):
        raise InputError(
            "request body is not valid JSON (number or nesting too large)", "invalid_json"
        ) from None


def jsonable(values: Any) -> Any:
    """Plain JSON data: an array as Python values (float32 as the float64 it is, not its
    shortest decimal). `dumps` writes NaN and infinities as null, JSON having no such numbers."""
    return values.tolist() if isinstance(values, np.ndarray) else values


def dumps(body: Any) -> bytes:
    """Compact JSON; NaN and infinities as null. orjson first, NumPy values as they are (several
    times faster); what it refuses (object arrays, integers past 64 bits, keys that are not
    strings) goes through json."""
    try:
        return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:
        plain = _plain(body)
        return json.dumps(plain, allow_nan=False, separators=_COMPACT, default=str).encode()


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
