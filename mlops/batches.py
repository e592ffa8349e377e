"""Reading a batch job's input: every file of a data source, as record batches, in name order.

The files come from `mlops.sources.locate` (local, S3 in place, HTTP(S) downloaded), and are read
with PyArrow's streaming readers as they are needed: Parquet `batch_rows` rows at a time, CSV in
blocks joined into batches of at least `batch_rows`. Also the input's row count (Parquet footers
only) and its digest, computed as `make prepare` computes a data source's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.csv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mlops.data import digest_of_listing
from mlops.errors import DataError
from mlops.serving.schema import InputSchema
from mlops.sources import Located, first_line

# CSV is parsed in blocks of this many bytes, joined into batches of `batch_rows`: PyArrow's
# reader parses blocks ahead of the consumer, about 30 at a time, so the block size bounds that.
_CSV_READ = pyarrow.csv.ReadOptions(block_size=4 * 2**20)
_ARROW_TYPES = {
    "number": pa.float64(),
    "integer": pa.float64(),
    "string": pa.string(),
    "boolean": pa.bool_(),
}


def files(
    located: Located, schema: InputSchema, keep: tuple[str, ...], batch_rows: int
) -> Iterator[tuple[str, Iterator[pa.RecordBatch]]]:
    """(origin, its record batches) for each input file, in name order."""
    for path, part in zip(located.paths, located.parts.parts, strict=True):
        reader = _batches(located.filesystem, path, part.origin, schema, keep, batch_rows)
        yield part.origin, reader


def _batches(
    filesystem: pafs.FileSystem,
    path: str,
    origin: str,
    schema: InputSchema,
    keep: tuple[str, ...],
    batch_rows: int,
) -> Iterator[pa.RecordBatch]:
    """One file's record batches, read as they are needed. PyArrow's own streaming readers, not a
    `pyarrow.dataset` scanner: the scanner decodes row groups ahead of a consumer slower than
    the disk (as predicting is), and held about 300 MB more for 2 million rows."""
    try:
        with filesystem.open_input_file(path) as handle:
            if PurePosixPath(path).suffix.lower() == ".csv":
                reader: Any = pyarrow.csv.open_csv(
                    handle, _CSV_READ, convert_options=_csv_types(schema)
                )
                names = reader.schema.names
                reader = _joined(reader, batch_rows)
            else:
                parquet = pq.ParquetFile(handle, pre_buffer=False)
                names = parquet.schema_arrow.names
                wanted = [*dict.fromkeys([*(n for n in schema.names if n in names), *keep])]
                reader = parquet.iter_batches(batch_rows, columns=wanted, use_threads=True)
            missing = [name for name in keep if name not in names]
            if missing:
                raise DataError(f"{origin}: no column {missing[0]!r} to keep (--keep)")
            yield from reader
    except (OSError, ValueError) as err:  # pyarrow's errors: a corrupt page, a CSV value, S3
        raise DataError(f"data file {origin} cannot be read: {first_line(err)}") from None


def _joined(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """Batches of at least `rows` rows (the last one fewer), from batches of any size."""
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    for batch in batches:
        pending.append(batch)
        pending_rows += batch.num_rows
        if pending_rows >= rows:
            yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]
            pending, pending_rows = [], 0
    if pending:
        yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]


def _csv_types(schema: InputSchema) -> pyarrow.csv.ConvertOptions:
    """The model's columns typed as the model wants them (numbers as float64, ...), so that
    validation sees what a Parquet file holds; an empty field is null, as the server reads a
    CSV body, and "NA" stays a string."""
    types = {c.name: _ARROW_TYPES[c.kind] for c in schema.columns if c.kind in _ARROW_TYPES}
    return pyarrow.csv.ConvertOptions(
        column_types=types, null_values=[""], strings_can_be_null=True
    )


def count_rows(located: Located) -> int | None:
    """Rows in the input, from Parquet footers alone; None when a CSV file would need a scan."""
    if any(PurePosixPath(path).suffix.lower() == ".csv" for path in located.paths):
        return None
    try:
        footers = [pq.read_metadata(path, filesystem=located.filesystem) for path in located.paths]
        return sum(int(footer.num_rows) for footer in footers)
    except (OSError, ValueError):  # reading says what is wrong, with the file's name
        return None


def input_digest(located: Located) -> str:
    """sha256 of the input as `make prepare` digests it: a file's bytes, or the listing of the
    partitions' digests (mlops/data.py). Read once more for this, without holding it."""
    digests = []
    for path, part in zip(located.paths, located.parts.parts, strict=True):
        try:
            with located.filesystem.open_input_stream(path) as stream:
                digests.append((part.name, hashlib.file_digest(stream, "sha256").hexdigest()))
        except OSError as err:
            raise DataError(f"data file {part.origin} cannot be read: {first_line(err)}") from None
    return digest_of_listing(digests) if located.parts.partitioned else digests[0][1]
