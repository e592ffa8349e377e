"""`make bench`: our server against `mlflow models serve`, MLServer and a bare-Starlette ceiling.

    python -m benchmarks.serving --config configs/default.yaml [--out bench-results]
        [--families linear random_forest torch_mlp] [--servers mlflow mlserver ceiling ours]
        [--workers 1] [--duration-s 5] [--mlserver .venv-mlserver/bin/mlserver]

In a temp MLflow store it registers our three families (models.py), then for each model starts
every server (servers.py) in turn with the same worker count, drives them all with the same load
generator (loadgen.py) through the MLflow protocol (`dataframe_split` on /invocations, 1 and 100
rows, concurrency 1, 8 and 64) and measures time to ready and resident memory; then ours by
protocol (protocols.py: /invocations, v2 REST and v2 gRPC, 1-row requests at concurrency 64).
The tables go to stdout, `<out>/serving.md` and `<out>/serving.json`, with the targets
(report.py). Takes several minutes; CI does not run it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np

from benchmarks.loadgen import LoadResult, load_tool, run_load, tree_rss_bytes
from benchmarks.models import FAMILIES, BenchModel, bench_data, register_bench_models
from benchmarks.protocols import run_protocols
from benchmarks.report import markdown_report, targets
from benchmarks.servers import (
    SERVERS,
    ServerSpec,
    Started,
    launch,
    launch_grpc_ceiling,
    stop,
    tag,
)
from mlops.cli import EXIT_OK, make_parser, parse, run_step
from mlops.config import Config
from mlops.serving.model import Options, load_model
from mlops.serving.settings import parse_source
from mlops.serving.validate import Table
from mlops.tracking import configure_tracking

log = logging.getLogger(__name__)

CONCURRENCY = (1, 8, 64)
ROWS = (1, 100)
_WARM_S = 1.0  # seconds of load of a cell's own shape before it is measured


@dataclass(frozen=True)
class BenchOptions:
    config: Path
    out: Path
    families: tuple[str, ...]
    servers: tuple[str, ...]
    workers: int
    duration_s: float
    mlserver: Path


@dataclass(frozen=True)
class ServerRun:
    server: str
    family: str
    ready_s: float
    rss_mb: float
    loads: dict[str, LoadResult]  # "<rows>x<concurrency>" -> result


def run_bench(options: BenchOptions) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mlops-bench-") as folder:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(folder) / 'mlflow.db'}"
        os.environ.pop("MLFLOW_REGISTRY_URI", None)
        configure_tracking()
        models = register_bench_models(list(options.families))
        results = [bench_family(m, options, Path(folder)) for m in models]
    by_protocol = {
        m.family: protocols for m, (_, _, protocols) in zip(models, results, strict=True)
    }
    report: dict[str, Any] = {
        "load_generator": load_tool(),
        "servers": list(options.servers),
        "workers": options.workers,
        "cpus": os.cpu_count(),
        "duration_s": options.duration_s,
        "in_process_ms": {
            m.family: times for m, (_, times, _) in zip(models, results, strict=True)
        },
        "runs": [dataclasses.asdict(run) for runs, _, _ in results for run in runs],
        "protocols": by_protocol,
    }
    report["targets"] = targets(report)
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "serving.json").write_text(json.dumps(report, indent=2))
    (options.out / "serving.md").write_text(markdown_report(report))
    return report


def payload(rows: int) -> bytes:
    frame, _ = bench_data()
    split = {"columns": list(frame.columns), "data": frame.head(rows).to_numpy().tolist()}
    return json.dumps({"dataframe_split": split}).encode()


class InProcess:
    """The same model loaded here: the model alone (what our fast path calls) and MLflow's
    pyfunc (what `mlflow models serve` and MLServer call), timed on the bench payload's rows."""

    def __init__(self, model: BenchModel) -> None:
        self.served = load_model(parse_source(model.uri, model.family), warmup_rows=8, threads=1)
        self.pyfunc = mlflow.pyfunc.load_model(self.served.ref.uri)
        self.frame, _ = bench_data()

    def model_ms(self, rows: int) -> float:
        table = Table(self.frame.head(rows).to_numpy())
        return _median_ms(lambda: self.served.predict([table], Options()))

    def pyfunc_ms(self, rows: int) -> float:
        head = self.frame.head(rows)
        return _median_ms(lambda: self.pyfunc.predict(head), repeat=100)


def _median_ms(call: Callable[[], Any], repeat: int = 300) -> float:
    call()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return float(np.median(samples) * 1e3)


def bench_family(
    model: BenchModel, options: BenchOptions, folder: Path
) -> tuple[list[ServerRun], dict[str, float], dict[str, Any]]:
    """Start every server (one at a time, so each time to ready is measured alone), then run
    each load cell on one server after the other, so background noise hits all alike; then our
    server's protocols against each other (protocols.py)."""
    local = InProcess(model)
    in_process = {f"pyfunc_{rows}": local.pyfunc_ms(rows) for rows in ROWS}
    spec = ServerSpec(options.config, model.uri, options.workers, options.mlserver, folder)
    started: dict[str, Started] = {}
    try:
        for kind in options.servers:
            started[kind] = launch(kind, spec)
        for server in started.values():
            run_load(server.url, payload(1), 8, 2.0)  # warm-up: first requests, lazy imports
        loads = _run_cells(started, model.family, local, in_process, options.duration_s)
        runs = [_server_run(kind, model.family, s, loads[kind]) for kind, s in started.items()]
        started["grpc ceiling"] = launch_grpc_ceiling(folder)
        protocols = run_protocols(
            started["ours"], started["grpc ceiling"], tag(model.uri), options.duration_s
        )
        return runs, in_process, protocols
    finally:
        for server in started.values():
            stop(server.process)


def _run_cells(
    started: dict[str, Started],
    family: str,
    local: InProcess,
    in_process: dict[str, float],
    duration_s: float,
) -> dict[str, dict[str, LoadResult]]:
    """Every cell on every server. Each concurrency-1 cell is preceded by a short load of its own
    shape (`_WARM_S`): a server idle for a few seconds, while the others were measured, starts
    slow on this host. Ours are bracketed by the in-process predict time they are compared with,
    measured just before the warm-up and just after the cell, so a slow spell of the machine
    hits both alike."""
    loads: dict[str, dict[str, LoadResult]] = {kind: {} for kind in started}
    for rows in ROWS:
        for connections in CONCURRENCY:
            for kind, server in started.items():
                timed = connections == 1 and kind == "ours"
                before = local.model_ms(rows) if timed else 0.0
                if connections == 1:  # not before c8/c64: a backlog would spill into the cell
                    run_load(server.url, payload(rows), 1, _WARM_S)
                result = run_load(server.url, payload(rows), connections, duration_s)
                if timed:
                    in_process[f"model_{rows}"] = (before + local.model_ms(rows)) / 2
                loads[kind][f"{rows}x{connections}"] = result
                log.info("%s %s %dx%d: %s", kind, family, rows, connections, result)
    return loads


def _server_run(kind: str, family: str, server: Started, loads: dict[str, LoadResult]) -> ServerRun:
    rss_mb = tree_rss_bytes(server.process.pid) / 2**20
    return ServerRun(kind, family, server.ready_s, rss_mb, loads)


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__ or "")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--families", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    parser.add_argument("--workers", type=int, default=1, help="worker processes per server")
    parser.add_argument("--duration-s", type=float, default=5.0, help="seconds per load cell")
    parser.add_argument(
        "--mlserver", type=Path, default=Path(".venv-mlserver/bin/mlserver"), help="executable"
    )
    args = parse(parser, argv)
    servers = tuple(kind for kind in SERVERS if kind in args.servers)  # table order, ours last
    if "ours" not in servers:
        parser.error(f"--servers must include ours (every figure is a ratio to it): {servers}")
    if "mlserver" in servers and not args.mlserver.is_file():
        parser.error(f"no MLServer at {args.mlserver}: `make bench` builds .venv-mlserver")

    def step(config: Config) -> int:
        families = tuple(args.families)
        options = BenchOptions(
            args.config, args.out, families, servers, args.workers, args.duration_s, args.mlserver
        )
        report = run_bench(options)
        print((args.out / "serving.md").read_text())
        missed = [check for check in report["targets"] if not check["met"]]
        print(f"{len(report['targets']) - len(missed)}/{len(report['targets'])} targets met")
        return EXIT_OK

    return run_step(args, step)


if __name__ == "__main__":
    sys.exit(main())
