"""Decoding and validation without a server: every payload shape, every refusal and its message."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mlops.config import load_config
from mlops.errors import ConfigError
from mlops.serving import mlflow_protocol, v2
from mlops.serving.errors import InputError, UnsupportedMediaType
from mlops.serving.http import dumps, jsonable
from mlops.serving.schema import Column, InputSchema
from mlops.serving.settings import parse_source
from mlops.serving.validate import Table, drift_counts, may_hold_booleans, to_frame
from tests.conftest import REPO

pytestmark = pytest.mark.serving

NUMERIC = InputSchema(
    (
        Column("a", "double", low=0.0, high=10.0),
        Column("b", "long"),
        Column("c", "double", nullable=True),
    )
)
MIXED = InputSchema(
    (
        Column("x", "double"),
        Column("city", "string", nullable=True, categories=frozenset({"paris", "lyon"})),
        Column("flag", "boolean"),
        Column("extra", "double", required=False, nullable=True),
    )
)


def decode(payload: object, schema: InputSchema = NUMERIC, max_rows: int = 100) -> np.ndarray:
    body = json.dumps(payload).encode()
    return mlflow_protocol.decode(body, "application/json", schema, max_rows).table.data


def refusal(payload: object, schema: InputSchema = NUMERIC, max_rows: int = 100) -> InputError:
    with pytest.raises(InputError) as caught:
        decode(payload, schema, max_rows)
    return caught.value


EXPECTED = [[1.0, 2.0, 3.0], [4.0, 5.0, math.nan]]


@pytest.mark.parametrize(
    "payload",
    [
        {"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1.0, 2, 3.0], [4, 5, None]]}},
        {"dataframe_split": {"columns": ["c", "b", "a"], "data": [[3.0, 2, 1.0], [None, 5, 4]]}},
        {"dataframe_records": [{"a": 1.0, "b": 2, "c": 3.0}, {"a": 4, "b": 5, "c": None}]},
        {"instances": [{"a": 1.0, "b": 2, "c": 3.0}, {"a": 4, "b": 5, "c": None}]},
        {"instances": [[1.0, 2, 3.0], [4, 5, None]]},
        {"inputs": {"a": [1.0, 4], "b": [2, 5], "c": [3.0, None]}},
        {"inputs": [{"a": 1.0, "b": 2, "c": 3.0, "ignored": "x"}, {"a": 4, "b": 5, "c": None}]},
    ],
    ids=[
        "split",
        "split-reordered",
        "records",
        "instances",
        "instances-rows",
        "inputs",
        "inputs-rec",
    ],
)
def test_every_json_shape_decodes_to_the_same_rows(payload: object) -> None:
    np.testing.assert_array_equal(decode(payload), np.array(EXPECTED))


def test_number_rows_in_either_column_order_decode_alike() -> None:
    """All-number rows take one np.array; in signature order it is not reordered at all."""
    rows = [[1.0, 2, 3.0], [4, 5, 6.5]]
    ordered = {"dataframe_split": {"columns": ["a", "b", "c"], "data": rows}}
    reordered = {
        "dataframe_split": {"columns": ["c", "a", "b"], "data": [[3.0, 1.0, 2], [6.5, 4, 5]]}
    }
    np.testing.assert_array_equal(decode(ordered), np.array(rows))
    np.testing.assert_array_equal(decode(reordered), np.array(rows))
    error = refusal({"dataframe_split": {"columns": ["c", "b", "a"], "data": [[3.0, 2.5, 1.0]]}})
    assert (error.reason, error.message) == ("wrong_type", "column 'b', row 0: expected an integer")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"instances": [[1.5, -2e-05, 3E+2], [0, 1, 2]]}', False),
        (b'{"dataframe_split": {"columns": ["rate", "size"], "data": [[1,\n 2]]}}', False),
        (b'{"instances": [[1.5, true, 3]]}', True),
        (b'{"instances":[[false,1,2]]}', True),
        (b'{"inputs": [{"name": "a", "datatype": "BOOL", "data": [true]}]}', True),
        (b'{"dataframe_split": {"columns": ["is_true"], "data": [[1]]}}', True),  # false alarm
    ],
)
def test_bodies_that_may_hold_booleans_are_told_apart(body: bytes, expected: bool) -> None:
    assert may_hold_booleans(body) is expected


def test_csv_decodes_with_empty_cells_as_missing() -> None:
    body = b"b,a,c\n2,1.0,3\n5,4,\n"
    table = mlflow_protocol.decode(body, "text/csv", NUMERIC, 100).table
    np.testing.assert_array_equal(table.data, np.array(EXPECTED))


def test_mixed_columns_keep_strings_and_booleans() -> None:
    data = decode({"dataframe_records": [{"x": 1.5, "city": None, "flag": True}]}, MIXED)
    frame = to_frame(MIXED, data, exact_types=True)
    row = frame.to_dict("records")[0]
    assert (row["x"], row["city"], row["flag"]) == (1.5, None, True)
    assert math.isnan(row["extra"])  # an optional column left out: missing
    assert frame["flag"].dtype == bool


def test_exact_types_cast_integer_columns() -> None:
    frame = to_frame(NUMERIC, decode({"instances": [[1.0, 2, 3.0]]}), exact_types=True)
    assert frame["b"].dtype == np.int64


@pytest.mark.parametrize(
    ("payload", "reason", "words"),
    [
        ({"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}}, "missing_column", "'c'"),
        (
            {"instances": [{"a": "1", "b": 2, "c": 3}]},
            "wrong_type",
            "'a', row 0: expected a number",
        ),
        (
            {"instances": [{"a": 1, "b": 2.5, "c": 3}]},
            "wrong_type",
            "'b', row 0: expected an integer",
        ),
        ({"instances": [{"a": True, "b": 2, "c": 3}]}, "wrong_type", "got true/false"),
        ({"instances": [[1.5, True, 3]]}, "wrong_type", "'b', row 0: expected a number, got true"),
        (
            {"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1, 2, False]]}},
            "wrong_type",
            "'c', row 0: expected a number, got true/false",
        ),
        ({"instances": [{"a": None, "b": 2, "c": 3}]}, "missing_value", "'a', row 0: missing"),
        ({"instances": [[1, 2, 3], [1, 2, 3], [None, 2, 3]]}, "missing_value", "row 2"),
        ({"instances": []}, "empty", "no rows"),
        ({"instances": [[1, 2, 3]] * 101}, "too_many_rows", "101 rows"),
        ({"instances": [[1, 2]]}, "shape", "row 0 must be a list of 3"),
        ({"inputs": {"a": [1], "b": [1, 2], "c": [1]}}, "shape", "same length"),
        ({"dataframe_split": {"data": [[1, 2, 3]]}, "instances": []}, "bad_format", "exactly one"),
        ({"rows": []}, "bad_format", "exactly one"),
        ([1, 2], "bad_format", "JSON object"),
        ({"instances": [[1, 2, 3]], "params": {"probabilities": "yes"}}, "bad_params", "true or"),
    ],
)
def test_bad_input_is_refused_with_a_message_naming_the_problem(
    payload: object, reason: str, words: str
) -> None:
    error = refusal(payload)
    assert error.reason == reason
    assert words in error.message


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity"])
def test_json_nan_and_infinity_are_refused_where_not_allowed(token: bytes) -> None:
    body = b'{"instances": [[' + token + b", 2, 3]]}"
    with pytest.raises(InputError) as caught:
        mlflow_protocol.decode(body, "application/json", NUMERIC, 100)
    assert caught.value.reason in ("missing_value", "not_finite")
    assert "'a'" in caught.value.message


def test_nan_is_accepted_where_the_profile_saw_missing_values() -> None:
    assert math.isnan(decode({"instances": [[1, 2, float("nan")]]})[0, 2])


def test_infinity_is_refused_even_in_a_nullable_column() -> None:
    body = b'{"instances": [[1, 2, Infinity]]}'
    with pytest.raises(InputError, match="Infinity is not allowed"):
        mlflow_protocol.decode(body, "application/json", NUMERIC, 100)


def test_invalid_json_names_the_position_and_never_echoes_the_body() -> None:
    secret = "s3cr3t-" * 20
    body = f'{{"instances": [[1, 2, {secret}]]}}'.encode()
    with pytest.raises(InputError) as caught:
        mlflow_protocol.decode(body, "application/json", NUMERIC, 100)
    assert "line 1 column" in caught.value.message
    assert "s3cr3t" not in caught.value.message


def test_unparseable_csv_value_names_column_and_row() -> None:
    with pytest.raises(InputError, match=r"column 'a', row 1: cannot parse as a number"):
        mlflow_protocol.decode(b"a,b,c\n1,2,3\nabc,2,3\n", "text/csv", NUMERIC, 100)


@pytest.mark.parametrize(
    "content_type", [None, "", "text/plain", "application/x-www-form-urlencoded", "json"]
)
def test_other_media_types_are_refused(content_type: str | None) -> None:
    with pytest.raises(UnsupportedMediaType):
        mlflow_protocol.media_type(content_type)


def test_json_with_charset_utf8_is_accepted_and_latin1_refused() -> None:
    assert mlflow_protocol.media_type("application/json; charset=utf-8") == "application/json"
    with pytest.raises(UnsupportedMediaType, match="UTF-8"):
        mlflow_protocol.media_type("application/json; charset=latin-1")


def test_v2_column_tensors_and_one_matrix_decode_alike() -> None:
    columns = {
        "inputs": [
            {"name": "a", "shape": [2], "datatype": "FP64", "data": [1.0, 4.0]},
            {"name": "b", "shape": [2, 1], "datatype": "INT64", "data": [[2], [5]]},
            {"name": "c", "shape": [2], "datatype": "FP64", "data": [3.0, None]},
        ]
    }
    matrix = {
        "inputs": [
            {"name": "x", "shape": [2, 3], "datatype": "FP64", "data": [1, 2, 3, 4, 5, None]}
        ]
    }
    for payload in (columns, matrix):
        request = v2.decode(json.dumps(payload).encode(), None, NUMERIC, 100, classifier=True)
        np.testing.assert_array_equal(request.table.data, np.array(EXPECTED))


@pytest.mark.parametrize(
    ("tensor", "words"),
    [
        (
            {"name": "a", "shape": [1], "datatype": "BYTES", "data": ["1"]},
            "does not fit double",
        ),
        ({"name": "zz", "shape": [1], "datatype": "FP64", "data": [1]}, "unknown input 'zz'"),
        ({"name": "a", "shape": [2], "datatype": "FP64", "data": [1]}, "do not fill shape"),
        ({"name": "m", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}, "needs 3 columns"),
    ],
)
def test_v2_bad_tensors_are_refused(tensor: dict[str, object], words: str) -> None:
    with pytest.raises(InputError, match=words):
        v2.decode(json.dumps({"inputs": [tensor]}).encode(), None, NUMERIC, 100, True)


def test_drift_counts_values_outside_the_training_range_and_categories() -> None:
    numeric = decode({"instances": [[-1, 2, 3], [5, 2, 3], [11, 2, 3]]})
    assert drift_counts(NUMERIC, Table(numeric)) == [("a", 2)]
    mixed = decode({"instances": [{"x": 1, "city": "nice", "flag": False}]}, MIXED)
    assert drift_counts(MIXED, Table(mixed)) == [("city", 1)]


def test_model_uris_are_parsed_into_what_to_watch() -> None:
    alias = parse_source("models:/clf@champion", "fallback")
    assert (alias.name, alias.alias, alias.version) == ("clf", "champion", "")
    pinned = parse_source("models:/clf/7", "fallback")
    assert (pinned.name, pinned.alias, pinned.version) == ("clf", "", "7")
    assert parse_source("runs:/abc/model", "fallback").name == "fallback"


@pytest.mark.parametrize(
    "override", ["serve.max_batch_rows=0", "serve.port=70000", "serve.prediction_buckets=[2, 1]"]
)
def test_nonsense_serve_settings_are_refused_naming_the_key(override: str) -> None:
    key = override.split("=")[0].replace(".", r"\.")
    with pytest.raises(ConfigError, match=key):
        load_config(REPO / "configs" / "default.yaml", [override])


def test_non_finite_predictions_become_null_in_strict_json() -> None:
    body = dumps({"predictions": jsonable(np.array([1.5, np.nan, np.inf]))})
    assert body == b'{"predictions":[1.5,null,null]}'


def test_answers_are_strict_json_whichever_encoder_writes_them() -> None:
    """orjson writes what it knows (NumPy arrays and scalars included); json the rest."""
    raw = {"values": np.array([0.5, np.nan]), "one": np.float64(np.inf), "n": np.int64(3)}
    assert dumps(raw) == b'{"values":[0.5,null],"one":null,"n":3}'
    labels = np.array(["yes", None], dtype=object)  # an object array: orjson refuses it
    assert dumps({"labels": labels, "x": float("nan")}) == b'{"labels":["yes",null],"x":null}'
    assert json.loads(dumps({1: 2**70})) == {"1": 2**70}  # a non-string key, a huge integer


def test_a_corrupt_parquet_body_is_refused() -> None:
    with pytest.raises(InputError, match="not a readable Parquet file"):
        mlflow_protocol.decode(b"PAR1 not really", mlflow_protocol.PARQUET, NUMERIC, 100)


@pytest.mark.parametrize(
    ("b_data", "words"),
    [
        ([2, 5, 6], "'b': 3 values do not fill shape \\[2\\]"),
        ([2, [5]], "column 'b', row 1: expected a number, got a list"),
        ([2, 5.5], "column 'b', row 1: expected an integer"),
        ([2, "5"], "column 'b', row 1: expected a number, got a string"),
        ([2, True], "column 'b', row 1: expected a number, got true/false"),
    ],
    ids=["ragged", "nested", "fractional", "string", "boolean"],
)
def test_v2_column_tensors_the_bulk_decode_refuses_are_named(
    b_data: list[object], words: str
) -> None:
    inputs = [
        {"name": "a", "shape": [2], "datatype": "FP64", "data": [1.0, 4.0]},
        {"name": "b", "shape": [2], "datatype": "INT64", "data": b_data},
        {"name": "c", "shape": [2], "datatype": "FP64", "data": [3.0, 6.0]},
    ]
    with pytest.raises(InputError, match=words):
        v2.decode(json.dumps({"inputs": inputs}).encode(), None, NUMERIC, 100, True)
