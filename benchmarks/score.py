"""Batch scoring against `mlflow models predict`: rows/s and peak memory, same model, same input.

    python -m benchmarks.score [--rows 1000000 2000000] [--family linear] [--rounds 2]

In a temp MLflow store it registers one bench model (models.py) and, for each size in `--rows`,
writes that many breast-cancer rows (resampled, with noise, and an `id` column) as one CSV file
and as Parquet. Then, alternating round after round so that a shared machine's noise falls on
all of them, each in a fresh process:
`scripts/score.py` on the CSV, `mlflow models predict -t csv --env-manager local` on the same CSV
(it reads the whole file with pandas and writes JSON), and `scripts/score.py` on the Parquet.
Each is timed end to end (start-up and model load included) and its peak resident memory read by
a wrapper process (`getrusage(RUSAGE_CHILDREN)`). Prints every run and, per size, the medians
and ratios; with two sizes or more, also the rate at scale: the extra rows of the largest input
over the extra seconds they took, start-up and model load cancelled out.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet as pq

from benchmarks.models import FAMILIES, bench_data, register_bench_models
from mlops.tracking import configure_tracking

REPO = Path(__file__).resolve().parents[1]
CHUNK_ROWS = 100_000
BASELINE = "mlflow models predict, CSV"
# The wrapped command's peak RSS in bytes (Linux reports ru_maxrss in KiB).
MEASURE = (
    "import resource, subprocess, sys; "
    "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)"
)


@dataclass(frozen=True)
class Run:
    name: str
    rows: int
    seconds: float
    peak_bytes: int


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 2_000_000])
    parser.add_argument("--family", choices=list(FAMILIES), default="linear")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mlops-score-bench-") as folder:
        root = Path(folder)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
        os.environ.pop("MLFLOW_REGISTRY_URI", None)
        configure_tracking()
        (model,) = register_bench_models([args.family])
        runs = []
        for rows in sorted(args.rows):
            folder_rows = root / str(rows)
            folder_rows.mkdir()
            write_inputs(folder_rows, rows)
            commands = contenders(folder_rows, model.uri)
            for _ in range(args.rounds):
                runs += [measure(name, rows, command) for name, command in commands]
    report(runs, args.family)
    return 0


def write_inputs(root: Path, rows: int) -> None:
    """`rows` rows as in.parquet (row groups of CHUNK_ROWS) and in.csv, written chunk by chunk."""
    base, _ = bench_data()
    rng = np.random.default_rng(0)
    parquet: pq.ParquetWriter | None = None
    csv: pyarrow.csv.CSVWriter | None = None
    for start in range(0, rows, CHUNK_ROWS):
        n = min(CHUNK_ROWS, rows - start)
        chunk = base.sample(n, replace=True, random_state=start, ignore_index=True)
        chunk = chunk * rng.uniform(0.95, 1.05, chunk.shape)
        chunk.insert(0, "id", np.arange(start, start + n))
        table = pa.Table.from_pandas(chunk, preserve_index=False)
        parquet = parquet or pq.ParquetWriter(root / "in.parquet", table.schema)
        csv = csv or pyarrow.csv.CSVWriter(root / "in.csv", table.schema)
        parquet.write_table(table)
        csv.write_table(table)
    for writer in (parquet, csv):
        if writer is not None:
            writer.close()


def contenders(root: Path, uri: str) -> list[tuple[str, list[str]]]:
    python, mlflow = sys.executable, str(Path(sys.executable).with_name("mlflow"))
    ours = [python, str(REPO / "scripts/score.py"), "--model-uri", uri, "--keep", "id"]
    theirs = [mlflow, "models", "predict", "-m", uri, "-t", "csv", "--env-manager", "local"]
    return [
        ("ours, CSV", [*ours, str(root / "in.csv"), str(root / "ours-csv.parquet")]),
        (
            "mlflow models predict, CSV",
            [*theirs, "-i", str(root / "in.csv"), "-o", str(root / "mlflow.json")],
        ),
        ("ours, Parquet", [*ours, str(root / "in.parquet"), str(root / "ours-pq.parquet")]),
    ]


def measure(name: str, rows: int, command: list[str]) -> Run:
    started = time.perf_counter()
    measured = subprocess.run(
        [sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if measured.returncode != 0:
        raise SystemExit(f"{name} failed:\n{measured.stderr[-2000:]}")
    run = Run(name, rows, seconds, int(measured.stdout.strip().splitlines()[-1]))
    print(f"{rows:>10,} {name:28s} {seconds:7.2f} s  peak {run.peak_bytes / 2**20:6.0f} MiB")
    return run


def report(runs: list[Run], family: str) -> None:
    names = list(dict.fromkeys(run.name for run in runs))
    sizes = sorted({run.rows for run in runs})
    seconds = {
        (name, rows): statistics.median(r.seconds for r in runs if (r.name, r.rows) == (name, rows))
        for name in names
        for rows in sizes
    }
    print(f"\nbench-{family}: medians, end to end (start-up and model load included)")
    for rows in sizes:
        for name in names:
            peak = max(r.peak_bytes for r in runs if (r.name, r.rows) == (name, rows))
            rate = rows / seconds[name, rows]
            ratio = seconds[BASELINE, rows] / seconds[name, rows]
            print(
                f"  {rows:>10,} rows  {name:28s} {rate:>10,.0f} rows/s  {ratio:5.1f}x"
                f"  peak RSS {peak / 2**20:6.0f} MiB"
            )
    if len(sizes) < 2:
        return
    low, high = sizes[0], sizes[-1]
    print(f"at scale: the {high - low:,} extra rows over the extra seconds they took")
    extra = {name: seconds[name, high] - seconds[name, low] for name in names}
    if min(extra.values()) <= 0:
        print("  (not measurable: a larger input took less time; too noisy, add --rounds)")
        return
    for name in names:
        ratio = extra[BASELINE] / extra[name]
        print(f"  {name:28s} {(high - low) / extra[name]:>10,.0f} rows/s  {ratio:5.1f}x")


if __name__ == "__main__":
    sys.exit(main())
