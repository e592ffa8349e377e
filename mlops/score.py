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
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mlops.batches import count_rows, files, input_digest
from mlops.config import ScoreConfig
from mlops.errors import DataError
from mlops.progress import Progress
from mlops.serving.errors import InputError
from mlops.serving.model import Options, ServedModel, load_model, one_line
from mlops.serving.schema import InputSchema
from mlops.serving.settings import ModelRef, parse_source
from mlops.serving.validate import Table, table_from_columns, table_from_numbers
from mlops.sources import first_line, locate, s3_filesystem

log = logging.getLogger(__name__)

PREDICTION = "prediction"
REASON = "reason"
_ROW = re.compile(r", row (\d+):")  # how validate.py names a row: "column 'x', row 5: ..."
# Rows the model predicts before it counts as loaded (the server's warm-up, mlops/serving/model.py).
WARMUP_ROWS = 64


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
        progress.start(count_rows(located))
        for origin, batches in files(located, model.schema, job.keep, config.batch_rows):
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
