"""The `make bench` report: the side-by-side table, our ratio to each server, the targets checked.

Targets, per family, measured in the same run:
- concurrency 64, 1-row requests: at least 30x the requests/s of `mlflow models serve` and 10x
  those of MLServer, and at most a tenth of either's p99;
- concurrency 1, 1-row requests: p50 at most 1 ms (linear, MLP) or 2 ms (the 100-tree forest);
  and our p50 minus the in-process predict time of the same rows under 1 ms, for 1 and 100 rows
  (we subtract the model's own predict, the smaller and so stricter of the two in-process
  figures): what the server adds to the model;
- concurrency 8, 100-row requests: at least 2x the requests/s of `mlflow models serve`; time to
  ready and memory no worse than it;
- our own protocols (protocols.py), concurrency 64, 1-row requests: v2 REST at least 0.9x the
  requests/s of /invocations, and v2 gRPC at least those of v2 REST, for one tensor per column
  and for one 2-D tensor alike.
The ceilings (a bare Starlette app, benchmarks/ceiling.py; a bare grpc.aio servicer,
benchmarks/grpc_ceiling.py) have no target: they show how close we are.
A server left out of the run (`--servers`) leaves out its columns and targets.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "<": operator.lt,
}
LABELS = {"mlflow": "mlflow", "mlserver": "MLServer", "ceiling": "ceiling", "ours": "ours"}
C64_RPS_MIN = {"mlflow": 30.0, "mlserver": 10.0}  # ours / theirs, 1-row requests
C64_P99_MAX = 0.1  # ours / theirs, for each server in C64_RPS_MIN
C1_P50_MAX_MS = {"linear": 1.0, "torch_mlp": 1.0, "random_forest": 2.0}
# (protocol, the protocol it is compared with, minimum ratio of requests/s)
PROTOCOL_MIN = [
    ("v2 columns", "invocations", 0.9),
    ("v2 matrix", "invocations", 0.9),
    ("grpc columns", "v2 columns", 1.0),
    ("grpc matrix", "v2 matrix", 1.0),
]


def _runs(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(run["family"], run["server"]): run for run in report["runs"]}


def _families(report: dict[str, Any]) -> list[str]:
    return sorted({run["family"] for run in report["runs"]})


def _others(report: dict[str, Any]) -> list[str]:
    return [kind for kind in report["servers"] if kind != "ours"]


Measured = list[tuple[str, float, str, float]]  # (check, value, operator, goal)


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    runs = _runs(report)
    checks = []
    for family in _families(report):
        ours = runs[(family, "ours")]
        measured = _latency(ours["loads"], report["in_process_ms"][family], family)
        for other in (kind for kind in _others(report) if kind in C64_RPS_MIN):
            measured += _at_c64(ours["loads"], runs[(family, other)]["loads"], other)
        if "mlflow" in report["servers"]:
            measured += _against_mlflow(ours, runs[(family, "mlflow")])
        measured += _protocols(report.get("protocols", {}).get(family, {}))
        checks += [_check(family, *item) for item in measured]
    return checks


def _protocols(loads: dict[str, Any]) -> Measured:
    if not loads:
        return []
    return [
        (f"c64 1-row req/s, {mine}/{theirs}", _rps(loads, mine) / _rps(loads, theirs), ">=", goal)
        for mine, theirs, goal in PROTOCOL_MIN
    ]


def _rps(loads: dict[str, Any], protocol: str) -> float:
    return float(loads[protocol]["requests_per_s"])


def _latency(mine: dict[str, Any], predict: dict[str, float], family: str) -> Measured:
    p50_1, p50_100 = mine["1x1"]["p50_ms"], mine["100x1"]["p50_ms"]
    return [
        ("c1 1-row p50, ms", p50_1, "<=", C1_P50_MAX_MS[family]),
        ("c1 1-row p50 - predict, ms", p50_1 - predict["model_1"], "<", 1),
        ("c1 100-row p50 - predict, ms", p50_100 - predict["model_100"], "<", 1),
    ]


def _at_c64(mine: dict[str, Any], theirs: dict[str, Any], other: str) -> Measured:
    label = LABELS[other]
    rps = _ratio(mine, theirs, "1x64", "requests_per_s")
    p99 = _ratio(mine, theirs, "1x64", "p99_ms")
    return [
        (f"c64 1-row req/s, ours/{label}", rps, ">=", C64_RPS_MIN[other]),
        (f"c64 1-row p99, ours/{label}", p99, "<=", C64_P99_MAX),
    ]


def _against_mlflow(ours: dict[str, Any], theirs: dict[str, Any]) -> Measured:
    rps = _ratio(ours["loads"], theirs["loads"], "100x8", "requests_per_s")
    return [
        ("c8 100-row req/s, ours/mlflow", rps, ">=", 2),
        ("time to ready, ours/mlflow", ours["ready_s"] / theirs["ready_s"], "<=", 1),
        ("memory, ours/mlflow", ours["rss_mb"] / theirs["rss_mb"], "<=", 1),
    ]


def _ratio(mine: dict[str, Any], theirs: dict[str, Any], cell: str, figure: str) -> float:
    return float(mine[cell][figure] / theirs[cell][figure])


def _check(family: str, name: str, value: float, op: str, goal: float) -> dict[str, Any]:
    return {
        "family": family,
        "check": name,
        "value": round(value, 3),
        "goal": f"{op} {goal:g}",
        "met": _OPS[op](value, goal),
    }


def markdown_report(report: dict[str, Any]) -> str:
    header = (
        f"Load generator: {report['load_generator']} (closed loop, {report['duration_s']:g} s "
        f"per cell); workers: {report['workers']} per server (MLServer: one process, "
        f"parallel_workers 0); CPUs: {report['cpus']}. Every server gets the same request: "
        "MLflow's `dataframe_split` JSON on POST /invocations (MLServer: mlserver-mlflow's "
        "/invocations)."
    )
    tables = [_load_table(report), _server_table(report), _protocol_table(report)]
    return "\n\n".join([header, *tables, _target_table(report)])


def _ordered(report: dict[str, Any]) -> list[str]:
    """Ours first, then the others in the order they ran."""
    return ["ours", *_others(report)]


def _load_table(report: dict[str, Any]) -> str:
    others, kinds = _others(report), _ordered(report)
    columns = [f"req/s {LABELS[kind]}" for kind in kinds]
    columns += [f"ours/{LABELS[kind]}" for kind in others]
    order = " / ".join(LABELS[kind] for kind in kinds)
    columns += [f"p50 ms, {order}", f"p99 ms, {order}", "failed"]
    lines = [
        "| model | rows | conc | " + " | ".join(columns) + " |",
        "|---|---:|---:|" + "---:|" * len(columns),
    ]
    runs = _runs(report)
    for family in _families(report):
        loads = {kind: runs[(family, kind)]["loads"] for kind in kinds}
        for cell in loads["ours"]:
            rows, conc = cell.split("x")
            cells = [family, rows, conc]
            cells += [f"{loads[kind][cell]['requests_per_s']:.0f}" for kind in kinds]
            cells += [
                f"{_ratio(loads['ours'], loads[kind], cell, 'requests_per_s'):.2f}"
                for kind in others
            ]
            cells += [_joined(loads, kinds, cell, "p50_ms"), _joined(loads, kinds, cell, "p99_ms")]
            cells += ["/".join(str(loads[kind][cell]["failed"]) for kind in kinds)]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _joined(loads: dict[str, dict[str, Any]], kinds: list[str], cell: str, figure: str) -> str:
    return " / ".join(f"{loads[kind][cell][figure]:.2f}" for kind in kinds)


def _server_table(report: dict[str, Any]) -> str:
    kinds = _ordered(report)
    order = " / ".join(LABELS[kind] for kind in kinds)
    lines = [
        f"| model | ready s, {order} | RSS MB, {order} | in-process predict ms, model only, "
        "1/100 rows | in-process pyfunc.predict ms, 1/100 rows |",
        "|---|---:|---:|---:|---:|",
    ]
    runs = _runs(report)
    for family in _families(report):
        p = report["in_process_ms"][family]
        cells = [family, " / ".join(f"{runs[(family, kind)]['ready_s']:.1f}" for kind in kinds)]
        cells += [" / ".join(f"{runs[(family, kind)]['rss_mb']:.0f}" for kind in kinds)]
        cells += [f"{p['model_1']:.2f} / {p['model_100']:.2f}"]
        cells += [f"{p['pyfunc_1']:.2f} / {p['pyfunc_100']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _protocol_table(report: dict[str, Any]) -> str:
    """Ours by protocol, 1-row requests at concurrency 64 (protocols.py)."""
    lines = [
        "Ours by protocol, 1-row requests, concurrency 64, alternating on one server:",
        "",
        "| model | protocol | req/s | server CPU us/req | p50 ms | p99 ms | failed | load gen |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for family, loads in sorted(report.get("protocols", {}).items()):
        for protocol, load in loads.items():
            cells = [
                family,
                protocol,
                f"{load['requests_per_s']:.0f}",
                f"{load['server_cpu_us']:.0f}",
            ]
            cells += [f"{load['p50_ms']:.2f}", f"{load['p99_ms']:.2f}", str(load["failed"])]
            lines.append("| " + " | ".join([*cells, load["tool"]]) + " |")
    return "\n".join(lines)


def _target_table(report: dict[str, Any]) -> str:
    lines = ["| model | target | value | goal | met |", "|---|---|---:|---|---|"]
    for check in report["targets"]:
        met = "yes" if check["met"] else "**no**"
        cells = [check["family"], check["check"], str(check["value"]), check["goal"], met]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
