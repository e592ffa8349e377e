"""Load generation for `make bench`: wrk when installed, else a small asyncio HTTP/1.1 client;
for gRPC, h2load (nghttp2's HTTP/2 load generator, C like wrk) when installed, else grpc.aio;
both send the same pre-serialized request (no protobuf work in the client).

All keep `connections` connections busy for `duration_s`, each sending the same request as soon
as the previous answer arrived (closed loop), and report requests/s and the latency p50 and p99
of answered requests. wrk's default 2 s timeout is raised to 60 s so that slow servers
are measured, not dropped. Also here: the resident memory of a process tree, from /proc.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


@dataclass(frozen=True)
class LoadResult:
    tool: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    failed: int  # non-2xx answers, socket errors and timeouts


def load_tool() -> str:
    return "wrk" if shutil.which("wrk") else "python"


def run_load(url: str, body: bytes, connections: int, duration_s: float) -> LoadResult:
    """POST `body` as JSON (v2 REST ignores the Content-Type) to `url`."""
    if load_tool() == "wrk":
        return _run_wrk(url, body, connections, duration_s)
    return asyncio.run(_run_python(url, body, connections, duration_s))


def _run_wrk(url: str, body: bytes, connections: int, duration_s: float) -> LoadResult:
    script = 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
    script += f"wrk.body = [==[{body.decode()}]==]\n"
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(script)
        lua.flush()
        command = ["wrk", "-t1", f"-c{connections}", f"-d{duration_s:g}s", "--timeout", "60s"]
        output = subprocess.run(
            [*command, "--latency", "-s", lua.name, url],
            capture_output=True,
            text=True,
            check=True,
            timeout=duration_s + 120,
        ).stdout
    return parse_wrk(output)


def parse_wrk(output: str) -> LoadResult:
    requests = int(_search(r"(\d+) requests in", output))
    non_2xx = int(_search(r"Non-2xx or 3xx responses: (\d+)", output, "0"))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    return LoadResult(
        tool="wrk",
        requests_per_s=float(_search(r"Requests/sec:\s+([\d.]+)", output)),
        p50_ms=_duration_ms(_search(r"\s50%\s+([\d.]+\w+)", output)),
        p99_ms=_duration_ms(_search(r"\s99%\s+([\d.]+\w+)", output)),
        requests=requests,
        failed=non_2xx + errors,
    )


def _search(pattern: str, text: str, default: str | None = None) -> str:
    match = re.search(pattern, text)
    if match is None:
        if default is None:
            raise ValueError(f"wrk output has no match for {pattern!r}:\n{text}")
        return default
    return match.group(1)


def _duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


async def _run_python(url: str, body: bytes, connections: int, duration_s: float) -> LoadResult:
    host, port, path = _split_url(url)
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
    request = f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
    latencies: list[float] = []
    failed: list[int] = []
    loop = asyncio.get_running_loop()
    until = loop.time() + duration_s
    started = time.perf_counter()
    clients = [_client(host, port, request, until, latencies, failed) for _ in range(connections)]
    await asyncio.gather(*clients)
    elapsed = time.perf_counter() - started
    p50, p99 = np.percentile(latencies, [50, 99]) * 1e3 if latencies else (0.0, 0.0)
    total = len(latencies) + len(failed)
    return LoadResult("python", total / elapsed, float(p50), float(p99), total, len(failed))


async def _client(
    host: str, port: int, request: bytes, until: float, latencies: list[float], failed: list[int]
) -> None:
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while loop.time() < until:
            sent = time.perf_counter()
            writer.write(request)
            status, close = await _read_response(reader)
            if 200 <= status < 300:
                latencies.append(time.perf_counter() - sent)
            else:
                failed.append(status)
            if close:
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
    finally:
        writer.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
    status = int(head.split(" ", 2)[1])
    length = int(_search(r"content-length:\s*(\d+)", head, "0"))
    await reader.readexactly(length)
    return status, "connection: close" in head


def grpc_load_tool() -> str:
    return "h2load" if shutil.which("h2load") else "grpc.aio"


def run_grpc_load(
    target: str, method: str, request: bytes, connections: int, duration_s: float
) -> LoadResult:
    """Unary calls of `method` ("/package.Service/Method") on `target` (host:port), one
    connection per concurrent caller, as wrk has one per connection. h2load sees HTTP statuses
    only, and a gRPC error travels in a 200's trailers: one call through grpcio first checks
    the request, and the caller counts errors under load from the server's own metrics."""
    if grpc_load_tool() == "grpc.aio":
        return asyncio.run(_run_grpc(target, method, request, connections, duration_s))
    with grpc.insecure_channel(target) as channel:
        channel.unary_unary(method)(request, timeout=30)  # raises with the server's message
    return _run_h2load(f"http://{target}{method}", request, connections, duration_s)


def _run_h2load(url: str, request: bytes, connections: int, duration_s: float) -> LoadResult:
    with tempfile.TemporaryDirectory(prefix="h2load-") as folder:
        body, log = Path(folder) / "body", Path(folder) / "log"
        # gRPC's framing: uncompressed, the message's length (big-endian), the message.
        body.write_bytes(b"\0" + len(request).to_bytes(4, "big") + request)
        command = ["h2load", f"-D{duration_s:g}", f"-c{connections}", "-m1", "-t1"]
        command += ["-d", str(body), "-H", "content-type: application/grpc", "-H", "te: trailers"]
        output = subprocess.run(
            [*command, f"--log-file={log}", url],
            capture_output=True,
            text=True,
            check=True,
            timeout=duration_s + 120,
        ).stdout
        # Per request: start time (us since the epoch), HTTP status, duration (us).
        lines = np.loadtxt(log, dtype=np.int64, ndmin=2).reshape(-1, 3)
    done = lines[lines[:, 1] == 200][:, 2] / 1e3
    p50, p99 = np.percentile(done, [50, 99]) if len(done) else (0.0, 0.0)
    return LoadResult(
        tool="h2load",
        requests_per_s=float(_search(r"finished in [\d.]+\w+, ([\d.]+) req/s", output)),
        p50_ms=float(p50),
        p99_ms=float(p99),
        requests=len(lines),
        failed=len(lines) - len(done) + int(_search(r"(\d+) errored", output, "0")),
    )


async def _run_grpc(
    target: str, method: str, request: bytes, connections: int, duration_s: float
) -> LoadResult:
    options = [("grpc.use_local_subchannel_pool", 1)]  # a connection of its own per channel
    channels = [grpc.aio.insecure_channel(target, options=options) for _ in range(connections)]
    latencies: list[float] = []
    failed: list[int] = []
    until = asyncio.get_running_loop().time() + duration_s
    started = time.perf_counter()
    try:
        calls = [channel.unary_unary(method) for channel in channels]  # bytes in, bytes out
        await asyncio.gather(*(_caller(c, request, until, latencies, failed) for c in calls))
    finally:
        for channel in channels:
            await channel.close()
    elapsed = time.perf_counter() - started
    p50, p99 = np.percentile(latencies, [50, 99]) * 1e3 if latencies else (0.0, 0.0)
    total = len(latencies) + len(failed)
    return LoadResult("grpc.aio", total / elapsed, float(p50), float(p99), total, len(failed))


async def _caller(
    call: Any, request: bytes, until: float, latencies: list[float], failed: list[int]
) -> None:
    loop = asyncio.get_running_loop()
    while loop.time() < until:
        sent = time.perf_counter()
        try:
            await call(request, timeout=60)
            latencies.append(time.perf_counter() - sent)
        except grpc.aio.AioRpcError as error:
            failed.append(error.code().value[0])


def _split_url(url: str) -> tuple[str, int, str]:
    match = re.fullmatch(r"http://([^:/]+):(\d+)(/.*)", url)
    if match is None:
        raise ValueError(f"expected http://host:port/path, got {url!r}")
    return match.group(1), int(match.group(2)), match.group(3)


def answers(base: str, endpoint: str) -> dict[str, float]:
    """Answers of `endpoint` so far, by status code, from the /metrics of our server at `base`
    (a gRPC method counts under the status HTTP would have given)."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "mlops_http_requests_total" and labels.get("endpoint") == endpoint:
                counts[labels["status"]] = counts.get(labels["status"], 0.0) + sample.value
    return counts


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of `pid` and all its descendants (a server and its workers)."""
    return sum(_rss_bytes(each) for each in _tree(pid))


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by `pid` and all its descendants."""
    ticks = 0
    for each in _tree(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (proc(5): fields 14, 15)
    return ticks / os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children[parent].append(int(stat.parent.name))
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children[current])
    return found


def _rss_bytes(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) * 1024 if match else 0
