"""Batch scoring streams: peak memory scoring 2 million rows stays within 150 MB of 100 thousand.

Both files have row groups of the same size (Parquet is decoded a row group's column chunk at a
time, so memory follows the row group size and the batch size, never the number of rows). Each
run is `scripts/score.py` in a fresh process; its peak resident set is read by a small
wrapper process with `getrusage(RUSAGE_CHILDREN)`, so no other child of the test session counts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO
from tests.score.conftest import BC_MODEL, Store, bc_rows

pytestmark = pytest.mark.slow

LARGE_ROWS, SMALL_ROWS = 2_000_000, 100_000
MAX_GROWTH_BYTES = 150 * 2**20
# Peak RSS of the command in argv[1:], in bytes (Linux reports ru_maxrss in KiB).
MEASURE = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)"
)


def write_rows(path: Path, rows: int, chunk_rows: int = SMALL_ROWS) -> None:
    """`rows` breast-cancer rows with noise, written in row groups of `chunk_rows`."""
    base = bc_rows()
    rng = np.random.default_rng(0)
    schema = pa.Schema.from_pandas(base, preserve_index=False)
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, chunk_rows):
            n = min(chunk_rows, rows - start)
            chunk = base.sample(n, replace=True, random_state=start, ignore_index=True)
            features = chunk.columns[1:]
            chunk[features] = chunk[features] * rng.uniform(0.95, 1.05, (n, len(features)))
            chunk["id"] = np.arange(start, start + n)
            writer.write_table(pa.Table.from_pandas(chunk, schema, preserve_index=False))


def peak_rss_bytes(store: Store, source: Path, output: Path) -> int:
    command = [sys.executable, str(REPO / "scripts/score.py"), str(source), str(output)]
    command += ["--keep", "id", "--set", f"registered_model={BC_MODEL}"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": store.uri}
    for inherited in ("MLFLOW_REGISTRY_URI", "MODEL_URI"):  # this store's model, nothing else
        env.pop(inherited, None)
    measured = subprocess.run(
        [sys.executable, "-c", MEASURE, *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert measured.returncode == 0, measured.stderr
    return int(measured.stdout.strip().splitlines()[-1])


def test_peak_memory_does_not_grow_with_the_input(score_store: Store, tmp_path: Path) -> None:
    write_rows(tmp_path / "small.parquet", SMALL_ROWS)
    write_rows(tmp_path / "large.parquet", LARGE_ROWS)
    small = peak_rss_bytes(score_store, tmp_path / "small.parquet", tmp_path / "small-out.parquet")
    large = peak_rss_bytes(score_store, tmp_path / "large.parquet", tmp_path / "large-out.parquet")
    assert pq.read_metadata(tmp_path / "large-out.parquet").num_rows == LARGE_ROWS
    growth = large - small
    figures = (
        f"{small / 2**20:.0f} MiB for {SMALL_ROWS:,} rows, {large / 2**20:.0f} for {LARGE_ROWS:,}"
    )
    assert growth < MAX_GROWTH_BYTES, f"peak RSS grew by {growth / 2**20:.0f} MiB ({figures})"
