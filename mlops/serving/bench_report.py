"""The `make bench` report: the side-by-side table and the issue's targets, checked.

Targets (our server against `mlflow models serve`, measured in the same run): at concurrency 64
with 1-row requests at least 10x the requests/s and at most a fifth of the p99; at concurrency 1
our p50 minus the in-process predict time of the same rows under 1 ms (we subtract the model's
own predict, the smaller and so stricter of the two in-process figures); 100-row requests at
concurrency 8 at least 2x the requests/s; time to ready and memory no worse.
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


def _runs(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(run["family"], run["server"]): run for run in report["runs"]}


def _families(report: dict[str, Any]) -> list[str]:
    return sorted({run["family"] for run in report["runs"]})


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    runs = _runs(report)
    checks = []
    for family in _families(report):
        ours, theirs = runs[(family, "ours")], runs[(family, "mlflow")]
        mine, other = ours["loads"], theirs["loads"]
        predict = report["in_process_ms"][family]
        measured = [
            ("c64 1-row req/s, ours/mlflow", _rps(mine, other, "1x64"), ">=", 10),
            (
                "c64 1-row p99, ours/mlflow",
                mine["1x64"]["p99_ms"] / other["1x64"]["p99_ms"],
                "<=",
                0.2,
            ),
            ("c1 1-row p50 - predict, ms", mine["1x1"]["p50_ms"] - predict["model_1"], "<", 1),
            (
                "c1 100-row p50 - predict, ms",
                mine["100x1"]["p50_ms"] - predict["model_100"],
                "<",
                1,
            ),
            ("c8 100-row req/s, ours/mlflow", _rps(mine, other, "100x8"), ">=", 2),
            ("time to ready, ours/mlflow", ours["ready_s"] / theirs["ready_s"], "<=", 1),
            ("memory, ours/mlflow", ours["rss_mb"] / theirs["rss_mb"], "<=", 1),
        ]
        checks += [_check(family, *item) for item in measured]
    return checks


def _rps(mine: dict[str, Any], other: dict[str, Any], cell: str) -> float:
    return float(mine[cell]["requests_per_s"] / other[cell]["requests_per_s"])


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
        f"per cell); workers: {report['workers']} per server; CPUs: {report['cpus']}."
    )
    return "\n\n".join([header, _load_table(report), _server_table(report), _target_table(report)])


def _load_table(report: dict[str, Any]) -> str:
    lines = [
        "| model | rows | conc | ours req/s | mlflow req/s | x | ours p50 ms | mlflow p50 ms "
        "| ours p99 ms | mlflow p99 ms | failed ours/mlflow |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    runs = _runs(report)
    for family in _families(report):
        mine, other = runs[(family, "ours")]["loads"], runs[(family, "mlflow")]["loads"]
        for cell in mine:
            a, b = mine[cell], other[cell]
            rows, conc = cell.split("x")
            cells = [family, rows, conc, f"{a['requests_per_s']:.0f}", f"{b['requests_per_s']:.0f}"]
            cells += [f"{_rps(mine, other, cell):.1f}", f"{a['p50_ms']:.2f}", f"{b['p50_ms']:.2f}"]
            cells += [f"{a['p99_ms']:.2f}", f"{b['p99_ms']:.2f}", f"{a['failed']}/{b['failed']}"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _server_table(report: dict[str, Any]) -> str:
    lines = [
        "| model | ready s, ours/mlflow | RSS MB, ours/mlflow | in-process predict ms, "
        "model only, 1/100 rows | in-process pyfunc.predict ms, 1/100 rows |",
        "|---|---:|---:|---:|---:|",
    ]
    runs = _runs(report)
    for family in _families(report):
        ours, theirs = runs[(family, "ours")], runs[(family, "mlflow")]
        p = report["in_process_ms"][family]
        cells = [family, f"{ours['ready_s']:.1f} / {theirs['ready_s']:.1f}"]
        cells += [f"{ours['rss_mb']:.0f} / {theirs['rss_mb']:.0f}"]
        cells += [f"{p['model_1']:.2f} / {p['model_100']:.2f}"]
        cells += [f"{p['pyfunc_1']:.2f} / {p['pyfunc_100']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _target_table(report: dict[str, Any]) -> str:
    lines = ["| model | target | value | goal | met |", "|---|---|---:|---|---|"]
    for check in report["targets"]:
        met = "yes" if check["met"] else "**no**"
        cells = [check["family"], check["check"], str(check["value"]), check["goal"], met]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
