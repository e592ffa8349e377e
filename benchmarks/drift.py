"""What drift watching costs: our server with the drift window on and off, same model, same load.

    python -m benchmarks.drift --config configs/default.yaml [--family linear] [--rounds 3]
        [--duration-s 5] [--connections 64] [--rows 1]

In a temp MLflow store it registers one bench model (models.py), starts two of our servers, one
with `serve.drift_window_rows` from the config (drift on) and one with it at 0 (off), then loads
them in turn, on, off, on, off, ..., with the same load generator (loadgen.py: wrk when installed)
and the same request (`dataframe_split`, 1 row, 64 connections by default). Alternating spreads
the noise of a shared machine over both. Prints requests/s and p99 of each run, the medians and
their ratio (on / off).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

from benchmarks.loadgen import LoadResult, load_tool, run_load
from benchmarks.models import FAMILIES, register_bench_models
from benchmarks.servers import ServerSpec, Started, launch, stop
from benchmarks.serving import payload
from mlops.tracking import configure_tracking

_WARM_S = 2.0  # load before measuring, so both servers are equally warm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, default=Path("configs/default.yaml"))
    parser.add_argument("--family", choices=list(FAMILIES), default="linear")
    parser.add_argument("--rounds", type=int, default=3, help="on/off pairs")
    parser.add_argument("--duration-s", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rows", type=int, default=1, help="rows per request")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mlops-drift-bench-") as folder:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(folder) / 'mlflow.db'}"
        os.environ.pop("MLFLOW_REGISTRY_URI", None)
        configure_tracking()
        (model,) = register_bench_models([args.family])
        servers = {
            state: launch("ours", _spec(args.config, Path(folder), model.uri, state))
            for state in ("on", "off")
        }
        try:
            results = _alternate(servers, args)
        finally:
            for server in servers.values():
                stop(server.process)
    _report(results, args)
    return 0


def _spec(config: Path, folder: Path, model_uri: str, state: str) -> ServerSpec:
    """The config as it is (on) or with the window at 0 (off), in a file of its own."""
    raw = yaml.safe_load(config.read_text())
    if state == "off":
        raw.setdefault("serve", {})["drift_window_rows"] = 0
    (folder / state).mkdir()
    path = folder / state / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return ServerSpec(path, model_uri, 1, Path("mlserver"), folder / state)


def _alternate(
    servers: dict[str, Started], args: argparse.Namespace
) -> dict[str, list[LoadResult]]:
    body = payload(args.rows)
    results: dict[str, list[LoadResult]] = {state: [] for state in servers}
    for server in servers.values():
        run_load(server.url, body, args.connections, _WARM_S)
    for _ in range(args.rounds):
        for state, server in servers.items():
            result = run_load(server.url, body, args.connections, args.duration_s)
            results[state].append(result)
            print(f"drift {state}: {result.requests_per_s:8.0f} req/s  p99 {result.p99_ms:6.1f} ms")
            time.sleep(0.5)
    print("drift gauges on:", _window_rows(servers["on"]), "rows in the window")
    print("drift gauges off:", _window_rows(servers["off"]) or "none")
    return results


def _window_rows(server: Started) -> str:
    url = server.url.replace("/invocations", "/metrics")
    with urllib.request.urlopen(url, timeout=10) as reply:
        lines = reply.read().decode().splitlines()
    found = [line.split()[-1] for line in lines if line.startswith("mlops_drift_window_rows{")]
    return found[0] if found else ""


def _report(results: dict[str, list[LoadResult]], args: argparse.Namespace) -> None:
    medians = {s: statistics.median(r.requests_per_s for r in runs) for s, runs in results.items()}
    failed = sum(r.failed for runs in results.values() for r in runs)
    print(
        f"{args.family}, {args.rows} row(s) x {args.connections} connections, {load_tool()}, "
        f"{args.rounds} x {args.duration_s:g} s each: median on {medians['on']:.0f} req/s, "
        f"off {medians['off']:.0f} req/s, on/off {medians['on'] / medians['off']:.3f} "
        f"({failed} failed)"
    )


if __name__ == "__main__":
    sys.exit(main())
