"""`make bench`, second part: our server past its limits, with its default settings.

    python -m benchmarks.overload --config configs/default.yaml [--out bench-results]
        [--families linear random_forest torch_mlp] [--duration-s 15] [--slow-clients 2000]

For each family, in a temp MLflow store (models.py), one server (scripts/serve.py):
- overload: two rounds of a concurrency-64 run (5 s, 1-row requests) then a concurrency-1024 run
  (`duration_s`), alternating so that a slow spell of a shared machine falls on both, and the
  best round of each compared. During the c1024 runs a prober asks /v2/health/ready on the
  probe port every 50 ms on a new connection, as a kubelet does. Answers are counted by status
  from the server's own /metrics (all rounds); wrk counts socket errors and timeouts.
- slow clients: `slow_clients` connections that send a request line, then one header byte a
  second; meanwhile a normal client sends 50 requests one after the other; then how many slow
  connections are still open once `serve.header_timeout_s` (+2 s) has passed.
Targets: 200-answers per second at c1024 at least 80 % of c64; every request answered 200 or 503;
readiness p99 under 100 ms; the normal client's p99 under 50 ms; no slow connection left open.
Results go to stdout and `<out>/overload.json`.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import os
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.loadgen import answers, run_load
from benchmarks.models import FAMILIES, register_bench_models
from benchmarks.servers import ServerSpec, free_port, launch, stop
from benchmarks.serving import payload
from mlops.cli import EXIT_ERROR, EXIT_OK, make_parser, parse, run_step
from mlops.config import Config
from mlops.tracking import configure_tracking

log = logging.getLogger(__name__)

PROBE_EVERY_S = 0.05
ROUNDS = 2
C64_S = 5.0


class Prober(threading.Thread):
    """GET /v2/health/ready on a new connection every `PROBE_EVERY_S`; keeps each latency."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(daemon=True)
        self.host, self.port = host, port
        self.latencies_ms: list[float] = []
        self.failures = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(PROBE_EVERY_S):
            started = time.perf_counter()
            try:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=2)
                connection.request("GET", "/v2/health/ready")
                ok = connection.getresponse().status == 200
                connection.close()
            except OSError:
                ok = False
            self.latencies_ms.append((time.perf_counter() - started) * 1e3)
            self.failures += not ok


def overload(url: str, probe_port: int, duration_s: float) -> dict[str, Any]:
    """`ROUNDS` rounds of concurrency 64 then 1024, each concurrency's best round compared."""
    base = url.removesuffix("/invocations")
    host, _ = base.removeprefix("http://").split(":")
    c64, ok_per_s, ready_ms = [], [], []
    answered, requests, unanswered, not_ready = Counter[str](), 0, 0, 0
    for _ in range(ROUNDS):
        c64.append(run_load(url, payload(1), 64, C64_S).requests_per_s)
        before = answers(base, "/invocations")
        prober = Prober(host, probe_port)
        prober.start()
        result = run_load(url, payload(1), 1024, duration_s)
        prober.done.set()
        prober.join()
        after = answers(base, "/invocations")
        this_round = {s: n - before.get(s, 0.0) for s, n in after.items()}
        ok_per_s.append(this_round.get("200", 0.0) / duration_s)
        answered.update({s: int(n) for s, n in this_round.items() if n})
        requests += result.requests
        unanswered += max(0, result.failed - int(this_round.get("503", 0)))
        ready_ms += prober.latencies_ms
        not_ready += prober.failures
    return {
        "c64_requests_per_s": max(c64),
        "c1024_ok_per_s": max(ok_per_s),
        "goodput_ratio": max(ok_per_s) / max(c64),
        "rounds": {"c64_requests_per_s": c64, "c1024_ok_per_s": ok_per_s},
        "answers": dict(sorted(answered.items())),
        "wrk_requests": requests,
        "socket_errors_and_timeouts": unanswered,
        "ready_p99_ms": float(np.percentile(ready_ms, 99)),
        "ready_failures": not_ready,
        "probes": len(ready_ms),
    }


async def slow_clients(base: str, count: int, header_timeout_s: float) -> dict[str, Any]:
    host, port = base.removeprefix("http://").split(":")
    slow = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /invocations HTTP/1.1\r\nHost: bench\r\nX-Slow: ")
        slow.append((reader, writer))
    started = time.monotonic()
    stop_dribbling = asyncio.Event()
    dribbling = asyncio.gather(_dribble([w for _, w in slow], stop_dribbling))
    latencies = [await asyncio.to_thread(_one_request, base) for _ in range(50)]
    await asyncio.sleep(max(0.0, header_timeout_s + 2 - (time.monotonic() - started)))
    stop_dribbling.set()
    await dribbling
    still_open = sum([not await _closed(reader) for reader, _ in slow])
    for _, writer in slow:
        writer.close()
    return {
        "slow_connections": count,
        "normal_p50_ms": float(np.percentile(latencies, 50)),
        "normal_p99_ms": float(np.percentile(latencies, 99)),
        "still_open_after_timeout": still_open,
    }


async def _dribble(writers: list[asyncio.StreamWriter], stop: asyncio.Event) -> None:
    while not stop.is_set():
        await asyncio.sleep(1)
        for writer in writers:
            if not writer.is_closing():
                writer.write(b"x")


async def _closed(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1 << 16), 0.05) == b"" or reader.at_eof()
    except TimeoutError:
        return False
    except ConnectionError:
        return True


def _one_request(base: str) -> float:
    request = urllib.request.Request(
        f"{base}/invocations", payload(1), {"Content-Type": "application/json"}
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=10) as reply:
        reply.read()
    return (time.perf_counter() - started) * 1e3


def met(cell: dict[str, Any], slow: dict[str, Any]) -> dict[str, bool]:
    seen = set(cell["answers"])
    return {
        "goodput >= 0.8 x c64": cell["goodput_ratio"] >= 0.8,
        "only 200 and 503": seen <= {"200", "503"} and not cell["socket_errors_and_timeouts"],
        "readiness p99 < 100 ms": cell["ready_p99_ms"] < 100 and not cell["ready_failures"],
        "normal client p99 < 50 ms": slow["normal_p99_ms"] < 50,
        "slow connections closed": slow["still_open_after_timeout"] == 0,
    }


def run(
    config: Config, config_path: Path, families: list[str], duration_s: float, count: int
) -> dict[str, Any]:
    results = {}
    with tempfile.TemporaryDirectory(prefix="mlops-overload-") as folder:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(folder) / 'mlflow.db'}"
        os.environ.pop("MLFLOW_REGISTRY_URI", None)
        configure_tracking()
        for model in register_bench_models(families):
            spec = ServerSpec(config_path, model.uri, 1, Path("unused"), Path(folder))
            # A free probe port: another server on this machine may hold the default one.
            os.environ["PROBE_PORT"] = str(probe_port := free_port())
            server = launch("ours", spec)
            try:
                run_load(server.url, payload(1), 8, 2.0)  # warm-up
                cell = overload(server.url, probe_port, duration_s)
                base = server.url.removesuffix("/invocations")
                slow = asyncio.run(slow_clients(base, count, config.serve.header_timeout_s))
            finally:
                stop(server.process)
            results[model.family] = {"overload": cell, "slow": slow, "met": met(cell, slow)}
            log.info("%s: %s", model.family, json.dumps(results[model.family]))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__ or "")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--families", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--duration-s", type=float, default=15.0, help="seconds at c1024")
    parser.add_argument("--slow-clients", type=int, default=2000)
    args = parse(parser, argv)

    def step(config: Config) -> int:
        results = run(config, args.config, args.families, args.duration_s, args.slow_clients)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "overload.json").write_text(json.dumps(results, indent=2))
        print(json.dumps(results, indent=2))
        missed = [f"{f}: {k}" for f, r in results.items() for k, ok in r["met"].items() if not ok]
        print("overload targets: " + ("all met" if not missed else "missed " + "; ".join(missed)))
        return EXIT_OK if not missed else EXIT_ERROR

    return run_step(args, step)


if __name__ == "__main__":
    sys.exit(main())
