"""Open Inference Protocol tensors as raw bytes: the binary tensor data extension of v2 REST and
gRPC's `raw_input_contents` / `raw_output_contents` share this layout.

Values are row-major and little-endian, BOOL one byte each; a BYTES element is its length as a
4-byte little-endian unsigned integer, then its bytes. Decoded values are plain Python values
(str for BYTES), so they go through the same validation as JSON data.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from mlops.serving.errors import InputError

_DTYPES = {
    "BOOL": np.dtype(np.bool_),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    **{f"INT{n}": np.dtype(f"<i{n // 8}") for n in (8, 16, 32, 64)},
    **{f"UINT{n}": np.dtype(f"<u{n // 8}") for n in (8, 16, 32, 64)},
}
_LENGTH = struct.Struct("<I")


def values_from_raw(name: str, datatype: str, raw: bytes | memoryview, count: int) -> list[Any]:
    """`count` values of `datatype` from `raw`, or 400 naming input `name`."""
    if datatype == "BYTES":
        return _strings(name, raw, count)
    dtype = _DTYPES.get(datatype)
    if dtype is None:
        raise InputError(f"input {name!r}: unknown datatype {datatype}", "wrong_type")
    if len(raw) != count * dtype.itemsize:
        message = f"input {name!r}: {len(raw)} bytes do not hold {count} {datatype} values"
        raise InputError(message, "shape")
    values: list[Any] = np.frombuffer(raw, dtype).tolist()
    return values


def _strings(name: str, raw: bytes | memoryview, count: int) -> list[Any]:
    view, values, offset = memoryview(raw), [], 0
    while offset < len(view):
        if offset + 4 > len(view):
            raise InputError(f"input {name!r}: BYTES element length cut short", "shape")
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4 + length
        if offset > len(view):
            raise InputError(f"input {name!r}: BYTES element runs past its data", "shape")
        values.append(text_of(name, view[offset - length : offset]))
    if len(values) != count:
        message = f"input {name!r}: {len(values)} BYTES elements do not fill {count} values"
        raise InputError(message, "shape")
    return values


def text_of(name: str, data: bytes | memoryview) -> str:
    try:
        return bytes(data).decode()
    except UnicodeDecodeError:
        raise InputError(
            f"input {name!r}: BYTES element is not valid UTF-8", "wrong_type"
        ) from None


def raw_from_array(array: np.ndarray, datatype: str) -> bytes:
    """The raw bytes of an output tensor of `datatype` (from schema.numpy_v2_datatype)."""
    if datatype != "BYTES":
        return np.ascontiguousarray(array, dtype=_DTYPES[datatype]).tobytes()
    encoded = [str(value).encode() for value in array.ravel().tolist()]
    return b"".join(_LENGTH.pack(len(item)) + item for item in encoded)
