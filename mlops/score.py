"""Batch scoring: a file or folder of partitions in, one Parquet file of predictions out.

Run by scripts/score.py (`make score INPUT=... OUTPUT=...`); docs/batch-scoring.md. The input is
any data source the pipeline reads (mlops/sources.py: local, s3://, http(s)://; CSV or Parquet),
read as record batches of `score.batch_rows` rows: memory follows the batch size, not the input.
Each batch is checked by the model server's own validation (mlops/serving/validate.py: the same
rules and messages) and predicted through the server's model path (mlops/serving/model.py), so a
row scores here as it would over HTTP. Row numbers in messages count from 0 in each input file.

Output is written to a hidden temporary name beside OUTPUT (also the rejects file) and renamed
into place once every batch is scored: a failed run leaves nothing behind. The file's metadata
names the model (name, version, URI) and the input's digest (as `make prepare` computes it).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mlops.config import ScoreConfig
from mlops.data import digest_of_listing
from mlops.errors import DataError
from mlops.progress import Progress
from mlops.serving.errors import InputError
from mlops.serving.model import Options, ServedModel, load_model, one_line
from mlops.serving.schema import InputSchema
from mlops.serving.settings import ModelRef, parse_source
from mlops.serving.validate import Table, table_from_columns, table_from_numbers
from mlops.sources import Located, first_line, locate, s3_filesystem

log = logging.getLogger(__name__)

PREDICTION = "prediction"
REASON = "reason"
_ROW = re.compile(r", row (\d+):")  # how validate.py names a row: "column 'x', row 5: ..."
# Rows the model predicts before it counts as loaded (the server's warm-up, mlops/serving/model.py).
WARMUP_ROWS = 64
# CSV is parsed in blocks of this many bytes, joined into batches of `batch_rows`: PyArrow's
# reader parses blocks ahead of the consumer, about 30 at a time, so the block size bounds that.
_CSV_READ = pyarrow.csv.ReadOptions(block_size=4 * 2**20)
_ARROW_TYPES = {
    "number": pa.float64(),
    "integer": pa.float64(),
    "string": pa.string(),
    "boolean": pa.bool_(),
}


@dataclass(frozen=True)
class ScoreJob:
    input: str
    output: str
    model_uri: str
    keep: tuple[str, ...] = ()
    probabilities: bool = False
    rejects: str | None = None  # None: the first invalid row stops the job


@dataclass(frozen=True)
class ScoreResult:
    scored: int
    rejected: int
    model: ModelRef
    input_digest: str
    seconds: float


def score(job: ScoreJob, config: ScoreConfig, model_name: str, progress: Progress) -> ScoreResult:
    """Score `job.input` with the model at `job.model_uri` into `job.output` (see the module)."""
    started = time.perf_counter()
    model = load_model(parse_source(job.model_uri, model_name), WARMUP_ROWS, os.cpu_count() or 1)
    options = Options(probabilities=job.probabilities)
    try:
        model.check_options(options)
    except InputError as err:
        raise DataError(f"--probabilities: {err.message}") from None
    with locate(job.input) as located, ExitStack() as stack:
        digest = input_digest(located)
        metadata = {
            "mlops.model_name": model.ref.name,
            "mlops.model_version": model.ref.version,
            "mlops.model_uri": model.ref.uri,
            "mlops.input": job.input,
            "mlops.input_digest": digest,
        }
        output = stack.enter_context(StagedParquet(job.output, metadata))
        rejects = stack.enter_context(StagedParquet(job.rejects, metadata)) if job.rejects else None
        scorer = _Scorer(model, options, job.keep, output, rejects)
        progress.start(_count_rows(located))
        for origin, batches in _files(located, model.schema, job.keep, config.batch_rows):
            first_row = 0
            for batch in batches:
                scorer.score(batch, origin, first_row)
                first_row += batch.num_rows
                progress.update(batch.num_rows)
        if scorer.scored == 0:
            raise DataError(f"input {job.input}: no rows to score ({scorer.rejected} rejected)")
        if rejects is not None:
            rejects.commit(scorer.rejects_schema)
        output.commit(scorer.output_schema)
    progress.finish()
    elapsed = time.perf_counter() - started
    return ScoreResult(scorer.scored, scorer.rejected, model.ref, digest, elapsed)


class _Scorer:
    """Validates, predicts and writes one batch at a time; counts rows scored and rejected."""

    def __init__(
        self,
        model: ServedModel,
        options: Options,
        keep: tuple[str, ...],
        output: StagedParquet,
        rejects: StagedParquet | None,
    ) -> None:
        self.model, self.options, self.keep = model, options, keep
        self.output, self.rejects = output, rejects
        self.scored = self.rejected = 0
        self.output_schema = self.rejects_schema = pa.schema([])

    def score(self, batch: pa.RecordBatch, origin: str, first_row: int) -> None:
        if self.rejects is None:
            try:
                table = validate(self.model.schema, batch)
            except InputError as err:
                raise DataError(f"{origin}: {_at_row(err, first_row)}") from None
            segments: list[tuple[int, int, Table | str]] = [(0, batch.num_rows, table)]
        else:
            segments = list(_valid_segments(self.model.schema, batch, origin, first_row))
        kept = [(start, stop, found) for start, stop, found in segments if isinstance(found, Table)]
        refused = [(start, found) for start, _, found in segments if isinstance(found, str)]
        if kept:
            self._write(batch, kept, origin, first_row)
        self.rejects_schema = batch.schema.append(pa.field(REASON, pa.string()))
        if refused and self.rejects is not None:
            rows = batch.take(pa.array([row for row, _ in refused]))
            reasons = pa.array([reason for _, reason in refused], pa.string())
            self.rejects.write(rows.append_column(REASON, reasons))
            self.rejected += len(refused)

    def _write(
        self, batch: pa.RecordBatch, kept: list[tuple[int, int, Any]], origin: str, first_row: int
    ) -> None:
        try:
            prediction = self.model.predict([table for _, _, table in kept], self.options)
        except Exception as err:  # the model's own code: any error, named with where it happened
            rows = f"rows {first_row + kept[0][0]}-{first_row + kept[-1][1] - 1}"
            raise DataError(f"{origin}, {rows}: the model failed: {one_line(err)}") from None
        indices = pa.array(np.concatenate([np.arange(start, stop) for start, stop, _ in kept]))
        columns = {name: batch.column(name).take(indices) for name in self.keep}
        columns[PREDICTION] = pa.array(np.asarray(prediction.values))
        if prediction.probabilities is not None:
            for i, label in enumerate(self.model.classes):
                columns[f"probability_{label}"] = pa.array(prediction.probabilities[:, i])
        scored = pa.RecordBatch.from_pydict(columns)
        self.output.write(scored)
        self.output_schema = scored.schema
        self.scored += len(indices)


def validate(schema: InputSchema, batch: pa.RecordBatch) -> Table:
    """`batch` as the server's validated Table, or the server's `InputError`. An all-numeric
    batch is checked as one float64 matrix (`table_from_numbers`); anything else, or a matrix
    that fails a check, takes the per-column road, which names the column and row."""
    present = set(batch.schema.names)
    if schema.numeric and all(_is_number(batch, name) for name in schema.names):
        data = np.empty((batch.num_rows, len(schema.names)), order="F")  # pandas' own layout
        for i, name in enumerate(schema.names):
            data[:, i] = batch.column(name).to_numpy(zero_copy_only=False)
        table = table_from_numbers(schema, data)
        if table is not None:
            return table
    columns = {name: batch.column(name).to_pylist() for name in schema.names if name in present}
    return table_from_columns(schema, columns, batch.num_rows)


def _is_number(batch: pa.RecordBatch, name: str) -> bool:
    kind = batch.schema.field(name).type if name in batch.schema.names else pa.null()
    return bool(pa.types.is_floating(kind) or pa.types.is_integer(kind))


def _valid_segments(
    schema: InputSchema, batch: pa.RecordBatch, origin: str, first_row: int, start: int = 0
) -> Iterator[tuple[int, int, Table | str]]:
    """(start, stop, Table) for runs of valid rows, (row, row + 1, reason) for each invalid one:
    a batch that fails is halved until the failing rows stand alone. A problem that names no
    row (a missing column) is the whole input's: it stops the job."""
    try:
        yield start, start + batch.num_rows, validate(schema, batch)
        return
    except InputError as err:
        if _ROW.search(err.message) is None:
            raise DataError(f"{origin}: {err.message}") from None
        if batch.num_rows == 1:
            yield start, start + 1, _at_row(err, first_row + start)
            return
    half = batch.num_rows // 2
    yield from _valid_segments(schema, batch.slice(0, half), origin, first_row, start)
    yield from _valid_segments(schema, batch.slice(half), origin, first_row, start + half)


def _at_row(err: InputError, first_row: int) -> str:
    """The server's message with its row counted from the file's first row, not the batch's."""
    return _ROW.sub(lambda m: f", row {first_row + int(m[1])}:", err.message, count=1)


def _files(
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
    for batch in batches:
        pending.append(batch)
        if sum(b.num_rows for b in pending) >= rows:
            yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]
            pending = []
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


def _count_rows(located: Located) -> int | None:
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


class StagedParquet:
    """Parquet written to a hidden name beside `uri` (a path or s3://bucket/key); `commit` moves
    it into place, and leaving the `with` block without a commit deletes it."""

    def __init__(self, uri: str, metadata: dict[str, str]) -> None:
        if uri.startswith("s3://"):
            self.filesystem, self.path = s3_filesystem(uri)
        else:
            self.filesystem, self.path = pafs.LocalFileSystem(), str(Path(uri).resolve())
        self.uri, self.metadata = uri, metadata
        folder, name = PurePosixPath(self.path).parent, PurePosixPath(self.path).name
        self.staging = str(folder / f".{name}.{uuid.uuid4().hex[:12]}.partial")
        self.writer: pq.ParquetWriter | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        try:
            self._open(batch.schema).write_batch(batch)
        except (OSError, ValueError) as err:  # no space, denied, a file's types differ
            raise DataError(f"cannot write {self.uri}: {first_line(err)}") from None

    def commit(self, schema: pa.Schema) -> None:
        """Move the file into place; with no rows written, an empty file of `schema`, so that a
        rejects file left by an earlier run never passes for this one's."""
        try:
            self._open(schema).close()
            self.filesystem.move(self.staging, self.path)
            self.writer = None
        except OSError as err:
            raise DataError(f"cannot write {self.uri}: {first_line(err)}") from None

    def _open(self, schema: pa.Schema) -> pq.ParquetWriter:
        if self.writer is None:
            self.filesystem.create_dir(str(PurePosixPath(self.path).parent), recursive=True)
            self.writer = pq.ParquetWriter(
                self.staging, schema.with_metadata(self.metadata), filesystem=self.filesystem
            )
        return self.writer

    def __enter__(self) -> StagedParquet:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.writer is None:
            return
        try:
            self.writer.close()
            self.filesystem.delete_file(self.staging)
        except OSError as err:  # the error that got us here matters more; say what is left
            log.warning("could not remove %s: %s", self.staging, first_line(err))
