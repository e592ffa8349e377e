"""The MLflow scoring protocol, as `mlflow models serve` speaks it on POST /invocations.

Requests: `application/json` with exactly one of `dataframe_split` ({"columns", "data"}),
`dataframe_records` ([{column: value}]), `instances` or `inputs` (records, rows in signature
order, or for `inputs` {column: [values]}), plus optional `params`; `text/csv` with a header
row; or `application/vnd.apache.parquet`. Our addition: `"params": {"probabilities": true}`
makes a classifier also return `probabilities` (one list per row, in the order of `classes`).
Responses: `{"predictions": [...], "model_version": "3"}`; errors `{"error_code": "BAD_REQUEST",
"message": "..."}` as MLflow sends them.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import pandas as pd
from mlflow.version import VERSION as MLFLOW_VERSION
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mlops.serving.errors import InputError, UnsupportedMediaType
from mlops.serving.http import (
    JSON_TYPE,
    Decoded,
    dumps,
    json_response,
    jsonable,
    parse_json,
    predict_request,
    services,
    version_headers,
)
from mlops.serving.model import Options, Prediction
from mlops.serving.schema import Column, InputSchema
from mlops.serving.validate import (
    Table,
    check_row_count,
    columns_from_rows,
    may_hold_booleans,
    table_from_columns,
    table_from_frame,
    table_from_records,
    table_from_rows,
)

CSV = "text/csv"
PARQUET = "application/vnd.apache.parquet"
FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    408: "DEADLINE_EXCEEDED",
    413: "REQUEST_LIMIT_EXCEEDED",
    415: "BAD_REQUEST",
    503: "TEMPORARILY_UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


def media_type(content_type: str | None) -> str:
    """JSON, CSV or Parquet from a Content-Type header; 415 for anything else."""
    if not content_type:
        raise UnsupportedMediaType("Content-Type is missing: send application/json or text/csv")
    mime, *parameters = (part.strip() for part in content_type.split(";"))
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "charset" and value.strip('" ').lower() not in ("utf-8", "utf8"):
            raise UnsupportedMediaType("only the UTF-8 charset is supported")
    mime = mime.lower()
    if mime not in (JSON_TYPE, CSV, PARQUET):
        raise UnsupportedMediaType(f"Content-Type must be {JSON_TYPE}, {CSV} or {PARQUET}")
    return mime


def decode(body: bytes, mime: str, schema: InputSchema, max_rows: int) -> Decoded:
    if mime == CSV:
        return Decoded(decode_csv(body, schema, max_rows), Options())
    if mime == PARQUET:
        return Decoded(decode_parquet(body, schema, max_rows), Options())
    payload = parse_json(body)
    if not isinstance(payload, dict):
        raise InputError(f"request body must be a JSON object with one of {FORMATS}", "bad_format")
    keys = [key for key in FORMATS if key in payload]
    if len(keys) != 1:
        raise InputError(f"request body must have exactly one of {FORMATS}", "bad_format")
    plain = not may_hold_booleans(body)
    table = _DECODERS[keys[0]](payload[keys[0]], schema, max_rows, plain)
    return Decoded(table, parse_params(payload.get("params")))


def parse_params(params: Any) -> Options:
    if params is None:
        return Options()
    if not isinstance(params, dict):
        raise InputError("params must be a JSON object", "bad_params")
    probabilities = params.get("probabilities", False)
    if not isinstance(probabilities, bool):
        raise InputError("params.probabilities must be true or false", "bad_params")
    rest = {key: value for key, value in params.items() if key != "probabilities"}
    return Options(probabilities, rest)


def _split(value: Any, schema: InputSchema, max_rows: int, plain: bool) -> Table:
    if not isinstance(value, dict) or not isinstance(value.get("data"), list):
        raise InputError(
            'dataframe_split must be {"columns": [...], "data": [[...], ...]}', "bad_format"
        )
    names = value.get("columns", list(schema.names))
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise InputError("dataframe_split.columns must be a list of column names", "bad_format")
    rows = value["data"]
    check_row_count(len(rows), max_rows)
    return table_from_rows(schema, names, rows, plain)


def _records(value: Any, schema: InputSchema, max_rows: int, plain: bool) -> Table:
    if not isinstance(value, list):
        raise InputError(
            "dataframe_records must be a list of {column: value} objects", "bad_format"
        )
    check_row_count(len(value), max_rows)
    return table_from_records(schema, value)


def _instances(value: Any, schema: InputSchema, max_rows: int, plain: bool) -> Table:
    """A list of records, of rows in signature order, or of scalars (one-column models)."""
    if isinstance(value, dict):
        return _columnar(value, schema, max_rows)
    if not isinstance(value, list):
        raise InputError(
            "instances / inputs must be a list or a {column: [values]} object", "bad_format"
        )
    check_row_count(len(value), max_rows)
    if isinstance(value[0], dict):
        return table_from_records(schema, value)
    if isinstance(value[0], list):
        return table_from_rows(schema, schema.names, value, plain)
    if len(schema.columns) == 1:
        return table_from_columns(schema, {schema.names[0]: value}, len(value))
    raise InputError("each instance must be an object or a list of values", "bad_format")


def _columnar(value: dict[str, Any], schema: InputSchema, max_rows: int) -> Table:
    lengths = {len(v) if isinstance(v, list) else -1 for v in value.values()}
    if -1 in lengths or len(lengths) != 1:
        raise InputError("inputs must map every column to a list of the same length", "shape")
    n_rows = lengths.pop()
    check_row_count(n_rows, max_rows)
    return table_from_columns(schema, value, n_rows)


_DECODERS = {
    "dataframe_split": _split,
    "dataframe_records": _records,
    "instances": _instances,
    "inputs": _instances,
}


def decode_csv(body: bytes, schema: InputSchema, max_rows: int) -> Table:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError("request body is not valid UTF-8", "unparseable") from None
    try:
        header, *rows = [row for row in csv.reader(io.StringIO(text)) if row]
    except ValueError:
        raise InputError("CSV body has no header row", "empty") from None
    except csv.Error as err:
        raise InputError(f"CSV body cannot be parsed: {err}", "unparseable") from None
    check_row_count(len(rows), max_rows)
    raw = columns_from_rows(header, rows)
    columns = {c.name: _csv_values(c, raw[c.name]) for c in schema.columns if c.name in raw}
    return table_from_columns(schema, columns, len(rows))


def decode_parquet(body: bytes, schema: InputSchema, max_rows: int) -> Table:
    try:
        frame = pd.read_parquet(io.BytesIO(body))
    except Exception as err:  # pyarrow raises several types for a corrupt file
        message = f"request body is not a readable Parquet file ({type(err).__name__})"
        raise InputError(message, "unparseable") from None
    check_row_count(len(frame), max_rows)
    return table_from_frame(schema, frame)


def _csv_values(column: Column, texts: Any) -> list[Any]:
    return [None if text == "" else _csv_value(column, text, row) for row, text in enumerate(texts)]


def _csv_value(column: Column, text: str, row: int) -> Any:
    try:
        if column.kind in ("number", "integer"):
            return float(text)
        return _BOOLEANS[text.strip().lower()] if column.kind == "boolean" else text
    except (ValueError, KeyError):
        expected = "true or false" if column.kind == "boolean" else "a number"
        message = f"column {column.name!r}, row {row}: cannot parse as {expected}"
        raise InputError(message, "unparseable") from None


def encode(prediction: Prediction, classes: tuple[Any, ...], version: str) -> bytes:
    body: dict[str, Any] = {"predictions": jsonable(prediction.values)}
    if prediction.probabilities is not None:
        body["probabilities"] = jsonable(prediction.probabilities)
        body["classes"] = list(classes)
    body["model_version"] = version
    return dumps(body)


def error_body(status: int, message: str) -> bytes:
    return dumps({"error_code": _ERROR_CODES.get(status, "INTERNAL_ERROR"), "message": message})


async def invocations(request: Request) -> Response:
    max_rows = services(request).settings.serve.max_rows
    mime = media_type(request.headers.get("content-type"))
    model, prediction, _ = await predict_request(
        request, lambda body, model: decode(body, mime, model.schema, max_rows)
    )
    body = encode(prediction, model.classes, model.ref.version)
    return json_response(body, headers=version_headers(model))


async def ping(request: Request) -> Response:
    """MLflow's health check: 200 once a model answered its warm-up, else 503."""
    ready = services(request).models.ready
    return Response("\n", status_code=200 if ready else 503, media_type=JSON_TYPE)


async def version(request: Request) -> Response:
    return Response(MLFLOW_VERSION, media_type=JSON_TYPE)


def routes() -> list[Route]:
    return [
        Route("/invocations", invocations, methods=["POST"]),
        Route("/ping", ping),
        Route("/health", ping),
        Route("/version", version),
    ]
