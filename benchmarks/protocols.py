"""Our server by protocol, for `make bench`: the same 1-row request at concurrency 64 as MLflow's
`dataframe_split` on /invocations, as v2 REST JSON (one tensor per column; one 2-D tensor) and as
v2 gRPC (the same two layouts, raw tensor contents as tritonclient sends them); beside them the
gRPC ceiling (grpc_ceiling.py: grpc.aio answering a constant) with the 2-D request.

All run on the same server in turn, alternating (forwards, then backwards, `ROUNDS` times), so a
slow spell of a shared machine hits every protocol alike; each figure is the mean of its rounds.
Beside requests/s, the server's own CPU time per request (all its threads, from /proc): on a
machine the load generator shares, requests/s also measures the load generator (wrk and h2load
are C; without h2load the gRPC one is Python), while CPU per request is the server's alone.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import statistics
from typing import Any

import numpy as np

from benchmarks.loadgen import LoadResult, answers, run_grpc_load, run_load, tree_cpu_s
from benchmarks.models import bench_data
from benchmarks.servers import Started
from mlops.serving.proto import grpc_predict_v2_pb2 as pb

log = logging.getLogger(__name__)

PROTOCOLS = (
    "invocations",
    "v2 columns",
    "v2 matrix",
    "grpc columns",
    "grpc matrix",
    "grpc ceiling",
)
CONNECTIONS = 64
ROUNDS = 2
INFER = "/inference.GRPCInferenceService/ModelInfer"


def bodies(model_name: str, rows: int = 1) -> dict[str, bytes]:
    frame = bench_data()[0].head(rows)
    names, values = [str(c) for c in frame.columns], frame.to_numpy(dtype=np.float64)
    split = {"columns": names, "data": values.tolist()}
    columns = [
        {"name": name, "shape": [rows], "datatype": "FP64", "data": values[:, i].tolist()}
        for i, name in enumerate(names)
    ]
    matrix = {"name": "input-0", "shape": list(values.shape), "datatype": "FP64"}
    matrix["data"] = values.ravel().tolist()
    grpc_columns = pb.ModelInferRequest(model_name=model_name)
    for i, name in enumerate(names):
        grpc_columns.inputs.add(name=name, datatype="FP64", shape=[rows])
        grpc_columns.raw_input_contents.append(np.ascontiguousarray(values[:, i]).tobytes())
    grpc_matrix = pb.ModelInferRequest(model_name=model_name)
    grpc_matrix.inputs.add(name="input-0", datatype="FP64", shape=list(values.shape))
    grpc_matrix.raw_input_contents.append(values.tobytes())
    return {
        "invocations": json.dumps({"dataframe_split": split}).encode(),
        "v2 columns": json.dumps({"inputs": columns}).encode(),
        "v2 matrix": json.dumps({"inputs": [matrix]}).encode(),
        "grpc columns": grpc_columns.SerializeToString(),
        "grpc matrix": grpc_matrix.SerializeToString(),
    }


def run_protocols(
    server: Started, grpc_ceiling: Started, model_name: str, duration_s: float
) -> dict[str, Any]:
    """{protocol: the mean LoadResult's fields and `server_cpu_us` per request}."""
    requests = bodies(model_name)
    results: dict[str, list[LoadResult]] = {protocol: [] for protocol in PROTOCOLS}
    cpu_s = dict.fromkeys(PROTOCOLS, 0.0)
    for round_ in range(ROUNDS):
        for protocol in PROTOCOLS if round_ % 2 == 0 else PROTOCOLS[::-1]:
            target = grpc_ceiling if protocol == "grpc ceiling" else server
            before = tree_cpu_s(target.process.pid)
            result = _load(protocol, server, grpc_ceiling, model_name, requests, duration_s)
            cpu_s[protocol] += tree_cpu_s(target.process.pid) - before
            log.info("ours %s 1x%d: %s", protocol, CONNECTIONS, result)
            results[protocol].append(result)
    summary = {}
    for protocol, runs in results.items():
        mean = _mean(runs)
        cpu_us = 1e6 * cpu_s[protocol] / max(mean.requests, 1)
        summary[protocol] = {**dataclasses.asdict(mean), "server_cpu_us": cpu_us}
    return summary


def _load(
    protocol: str,
    server: Started,
    grpc_ceiling: Started,
    model_name: str,
    requests: dict[str, bytes],
    duration_s: float,
) -> LoadResult:
    if protocol == "grpc ceiling":
        body = requests["grpc matrix"]
        return run_grpc_load(grpc_ceiling.grpc_target, INFER, body, CONNECTIONS, duration_s)
    if not protocol.startswith("grpc"):
        v2_url = server.url.replace("/invocations", f"/v2/models/{model_name}/infer")
        url = server.url if protocol == "invocations" else v2_url
        return run_load(url, requests[protocol], CONNECTIONS, duration_s)
    base = server.url.removesuffix("/invocations")
    before = answers(base, INFER)
    result = run_grpc_load(server.grpc_target, INFER, requests[protocol], CONNECTIONS, duration_s)
    # 499: the calls still in flight when the load generator stopped, cancelled by it.
    after = answers(base, INFER).items()
    refused = {s: n - before.get(s, 0.0) for s, n in after if s not in ("200", "499")}
    return dataclasses.replace(result, failed=result.failed + int(sum(refused.values())))


def _mean(runs: list[LoadResult]) -> LoadResult:
    return LoadResult(
        tool=runs[0].tool,
        requests_per_s=statistics.fmean(r.requests_per_s for r in runs),
        p50_ms=statistics.fmean(r.p50_ms for r in runs),
        p99_ms=statistics.fmean(r.p99_ms for r in runs),
        requests=sum(r.requests for r in runs),
        failed=sum(r.failed for r in runs),
    )
