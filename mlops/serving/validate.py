"""Validated request rows (`Table`) built from decoded values, and the model input frames.

Every column is checked against the model's `InputSchema`: present, right JSON type, finite, null
only where allowed. Errors name the column, the first bad row and the problem, never the value.
A `Table` is one 2-D array in signature column order: float64 when every column is numeric (then
a batch is one `np.concatenate` and one DataFrame), else object.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlops.serving.errors import InputError
from mlops.serving.schema import Column, InputSchema

_NONE = type(None)
_NUMBER = frozenset({int, float})
_JSON_NAMES = {
    bool: "true/false",
    str: "a string",
    _NONE: "null",
    list: "a list",
    dict: "an object",
}
_INT_DTYPES = {"long": np.int64, "integer": np.int32}
_NUMBER_BYTES = b"0123456789+-.eE,[] \t\r\n"  # what a JSON matrix of numbers is written with


@dataclass(frozen=True)
class Table:
    data: np.ndarray  # (rows, columns) in signature order

    @property
    def n_rows(self) -> int:
        return int(self.data.shape[0])


def check_row_count(n_rows: int, max_rows: int) -> None:
    if n_rows == 0:
        raise InputError("input has no rows", "empty")
    if n_rows > max_rows:
        raise InputError(
            f"input has {n_rows} rows, more than the limit of {max_rows}", "too_many_rows"
        )


def table_from_columns(
    schema: InputSchema, columns: Mapping[str, Sequence[Any]], n_rows: int
) -> Table:
    """Check every schema column in `columns` (extra columns are ignored, as MLflow does)."""
    values = [_values_of(c, columns, n_rows) for c in schema.columns]  # missing columns first
    arrays = [column_array(c, v) for c, v in zip(schema.columns, values, strict=True)]
    if schema.numeric:
        data = np.column_stack(arrays)
        if not np.isfinite(data).all():
            for column, array in zip(schema.columns, arrays, strict=True):
                _check_finite(column, array)
        return Table(data)
    data = np.empty((n_rows, len(arrays)), dtype=object)
    for i, (column, array) in enumerate(zip(schema.columns, arrays, strict=True)):
        if column.kind in ("number", "integer"):
            _check_finite(column, array)
        data[:, i] = array
    return Table(data)


def may_hold_booleans(body: bytes) -> bool:
    """Could the JSON `body` hold a `true` or `false`? Deleting the bytes numbers are written
    with leaves words, where `true` still reads `tru` and `false` `fals` (quicker than searching
    for both). A false alarm only sends the rows down the per-column road (`table_from_rows`)."""
    words = body.translate(None, _NUMBER_BYTES)
    return b"tru" in words or b"fals" in words


def table_from_rows(
    schema: InputSchema, names: Sequence[str], rows: Sequence[Any], plain_numbers: bool
) -> Table:
    """Rows given as lists in the order of `names`. `plain_numbers` says the JSON body has no
    `true` / `false` anywhere; then, for an all-numeric schema, one `np.array(rows)` builds the
    matrix and its dtype proves every value is a number (numpy turns null into object, strings
    into str; only booleans would pass as 1.0, hence the flag). Anything unusual takes the
    per-column road below, which finds and names the problem."""
    if plain_numbers and schema.numeric:
        table = number_matrix(schema, names, rows)
        if table is not None:
            return table
    return table_from_columns(schema, columns_from_rows(names, rows), len(rows))


def table_from_number_columns(
    schema: InputSchema, columns: Mapping[str, Sequence[Any]], n_rows: int, plain_numbers: bool
) -> Table:
    """`table_from_columns`, with the one-`np.array` road of `table_from_rows` for value lists
    that `plain_numbers` says hold no booleans."""
    if plain_numbers and schema.numeric:
        table = number_matrix(schema, list(columns), list(columns.values()), by_column=True)
        if table is not None:
            return table
    return table_from_columns(schema, columns, n_rows)


def number_matrix(
    schema: InputSchema,
    names: Sequence[str],
    rows: Sequence[Any] | np.ndarray,
    by_column: bool = False,
) -> Table | None:
    """The checked float64 matrix of number `rows` (or columns) in the order of `names`, or None
    when something in them needs the per-column road to be found and named."""
    in_order = tuple(names) == schema.names  # the usual case: no lookups, no copy
    where = {} if in_order else {name: i for i, name in enumerate(names)}
    if not in_order and (len(where) != len(names) or not all(n in where for n in schema.names)):
        return None
    try:
        matrix = np.array(rows)
    except ValueError:  # ragged rows
        return None
    if by_column:
        matrix = matrix.T
    if matrix.ndim != 2 or matrix.shape[1] != len(names) or matrix.dtype.kind not in "fi":
        return None
    if in_order:
        data = matrix.astype(np.float64, copy=False)
    else:
        data = matrix[:, [where[name] for name in schema.names]].astype(np.float64)
    return table_from_numbers(schema, data)


def table_from_numbers(schema: InputSchema, data: np.ndarray) -> Table | None:
    """A float64 matrix in signature order (an all-numeric schema; NaN for null) as a Table if
    every value passes the per-column checks below, else None: the per-column road
    (`table_from_columns`) then finds and names the problem."""
    finite = np.isfinite(data)
    if not finite.all() and (np.isinf(data).any() or not finite[:, ~schema.nullable_mask].all()):
        return None
    if schema.integer_mask.any():
        integers = data[:, schema.integer_mask]
        if (finite[:, schema.integer_mask] & (integers != np.floor(integers))).any():
            return None
    return Table(data)


def table_from_frame(schema: InputSchema, frame: pd.DataFrame) -> Table:
    """A DataFrame (a Parquet body, an input example) checked like any request; missing values
    become null, numpy scalars plain Python values."""
    plain = frame.astype(object).where(frame.notna(), None)
    columns = {name: plain[name].tolist() for name in schema.names if name in plain.columns}
    return table_from_columns(schema, columns, len(frame))


def columns_from_rows(names: Sequence[str], rows: Sequence[Any]) -> dict[str, Sequence[Any]]:
    """Rows given as lists, in the order of `names` -> one value list per column."""
    width = len(names)
    if len(set(names)) != width:
        raise InputError("column names must be unique", "shape")
    if not all(type(row) is list and len(row) == width for row in rows):
        bad = next(i for i, row in enumerate(rows) if type(row) is not list or len(row) != width)
        raise InputError(f"row {bad} must be a list of {width} values", "shape")
    transposed: list[Sequence[Any]] = list(zip(*rows, strict=True)) or [[] for _ in names]
    return dict(zip(names, transposed, strict=True))


def table_from_records(schema: InputSchema, records: Sequence[Any]) -> Table:
    """Rows given as {column: value} objects."""
    if not all(type(record) is dict for record in records):
        bad = next(i for i, record in enumerate(records) if type(record) is not dict)
        raise InputError(f"row {bad} must be an object of column: value", "shape")
    columns: dict[str, list[Any]] = {}
    for column in schema.columns:
        name = column.name
        try:
            columns[name] = [record[name] for record in records]
        except KeyError:
            if column.required:
                row = next(i for i, record in enumerate(records) if name not in record)
                raise InputError(
                    f"missing column {name!r} in row {row}", "missing_column"
                ) from None
            columns[name] = [record.get(name) for record in records]
    return table_from_columns(schema, columns, len(records))


def column_array(column: Column, values: Sequence[Any]) -> np.ndarray:
    kind = column.kind
    if kind in ("number", "integer"):
        return _numbers(column, values)
    if kind == "string":
        return _objects(column, values, str, "a string")
    if kind == "boolean":
        return _objects(column, values, bool, "true or false")
    array = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):  # lists stay single cells (MLflow checks these types)
        array[i] = value
    return array


def _values_of(column: Column, columns: Mapping[str, Sequence[Any]], n_rows: int) -> Sequence[Any]:
    values = columns.get(column.name)
    if values is None:
        if column.required:
            raise InputError(f"missing column {column.name!r}", "missing_column")
        return [None] * n_rows
    if len(values) != n_rows:
        raise InputError(
            f"column {column.name!r} has {len(values)} values, expected {n_rows}", "shape"
        )
    return values


def _numbers(column: Column, values: Sequence[Any]) -> np.ndarray:
    types = set(map(type, values))
    if not types <= _NUMBER:
        if _NONE in types and types - {_NONE} <= _NUMBER:
            values = [math.nan if v is None else v for v in values]
        else:
            _refuse_type(column, values, {int, float, _NONE}, "a number")
    try:
        array = np.array(values, dtype=np.float64)
    except OverflowError:
        raise InputError(f"column {column.name!r}: number out of range", "out_of_range") from None
    if column.kind == "integer":
        _check_integral(column, array)
    return array


def _objects(column: Column, values: Sequence[Any], kind: type, expected: str) -> np.ndarray:
    types = set(map(type, values))
    if not types <= {kind}:
        if _NONE in types and not column.nullable:
            row = next(i for i, v in enumerate(values) if v is None)
            raise _missing(column, row)
        if not types <= {kind, _NONE}:
            _refuse_type(column, values, {kind, _NONE}, expected)
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _refuse_type(column: Column, values: Sequence[Any], allowed: set[type], expected: str) -> None:
    row, value = next((i, v) for i, v in enumerate(values) if type(v) not in allowed)
    got = _JSON_NAMES.get(type(value), f"a {type(value).__name__}")
    raise InputError(
        f"column {column.name!r}, row {row}: expected {expected}, got {got}", "wrong_type"
    )


def _check_finite(column: Column, array: np.ndarray) -> None:
    finite = np.isfinite(array)
    if finite.all():
        return
    infinite = np.flatnonzero(np.isinf(array))
    if infinite.size:
        raise InputError(
            f"column {column.name!r}, row {infinite[0]}: Infinity is not allowed", "not_finite"
        )
    if not column.nullable:
        raise _missing(column, int(np.flatnonzero(~finite)[0]))


def _check_integral(column: Column, array: np.ndarray) -> None:
    fractional = np.flatnonzero(np.isfinite(array) & (array != np.floor(array)))
    if fractional.size:
        message = f"column {column.name!r}, row {fractional[0]}: expected an integer"
        raise InputError(message, "wrong_type")


def _missing(column: Column, row: int) -> InputError:
    return InputError(
        f"column {column.name!r}, row {row}: missing value (null or NaN) is not allowed",
        "missing_value",
    )


def to_frame(schema: InputSchema, data: np.ndarray, exact_types: bool) -> pd.DataFrame:
    """The model input DataFrame. `exact_types` casts to the signature's own dtypes (int64,
    float32, bool) for models whose pyfunc enforces the schema; sklearn takes float64 as is."""
    if schema.numeric and not exact_types:
        return pd.DataFrame(data, columns=schema.column_index, copy=False)
    columns = [_frame_column(c, data[:, i], exact_types) for i, c in enumerate(schema.columns)]
    frame = pd.DataFrame(dict(enumerate(columns)))
    frame.columns = schema.column_index
    return frame


def _frame_column(column: Column, values: np.ndarray, exact_types: bool) -> np.ndarray:
    kind = column.kind
    if kind in ("number", "integer"):
        floats = values.astype(np.float64)
        if exact_types and kind == "integer" and np.isfinite(floats).all():
            return floats.astype(_INT_DTYPES[column.dtype])
        if exact_types and column.dtype == "float":
            return floats.astype(np.float32)
        return floats
    if kind == "boolean" and not any(v is None for v in values):
        return values.astype(bool)
    return values


def drift_counts(schema: InputSchema, table: Table) -> list[tuple[str, int]]:
    """(column, count) of values outside the training range or category set, where nonzero."""
    low, high = schema.bounds
    if schema.numeric:
        outside = ((table.data < low) | (table.data > high)).sum(axis=0)
        return [(schema.names[i], int(outside[i])) for i in np.flatnonzero(outside)]
    counts = []
    for i, column in enumerate(schema.columns):
        values = table.data[:, i]
        if column.categories is not None:
            count = sum(1 for v in values if v is not None and str(v) not in column.categories)
        elif column.kind in ("number", "integer"):
            floats = values.astype(np.float64)
            count = int(((floats < low[i]) | (floats > high[i])).sum())
        else:
            count = 0
        if count:
            counts.append((column.name, count))
    return counts
