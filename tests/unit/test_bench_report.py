"""The `make bench` report: our ratio to each server, and the targets it checks."""

from __future__ import annotations

from typing import Any

from benchmarks.report import markdown_report, targets

CELLS = ("1x1", "1x8", "1x64", "100x1", "100x8", "100x64")


def _run(server: str, rps: float, p50_ms: float, p99_ms: float) -> dict[str, Any]:
    load = {"requests_per_s": rps, "p50_ms": p50_ms, "p99_ms": p99_ms, "failed": 0}
    loads = {cell: dict(load) for cell in CELLS}
    return {"server": server, "family": "linear", "ready_s": 2.0, "rss_mb": 300.0, "loads": loads}


def _report(servers: list[str]) -> dict[str, Any]:
    figures = {"ours": (4000, 0.5, 5), "mlflow": (100, 20, 100), "mlserver": (300, 10, 60)}
    figures["ceiling"] = (8000, 0.1, 3)
    return {
        "load_generator": "python",
        "servers": servers,
        "workers": 1,
        "cpus": 2,
        "duration_s": 1.0,
        "in_process_ms": {
            "linear": {"model_1": 0.1, "model_100": 0.2, "pyfunc_1": 3, "pyfunc_100": 4}
        },
        "runs": [_run(server, *figures[server]) for server in servers],
    }


def test_targets_compare_ours_with_mlflow_and_mlserver_at_concurrency_64() -> None:
    checks = {c["check"]: c for c in targets(_report(["mlflow", "mlserver", "ceiling", "ours"]))}
    assert checks["c64 1-row req/s, ours/mlflow"]["value"] == 40
    assert checks["c64 1-row req/s, ours/MLServer"]["met"] is True
    assert checks["c64 1-row p99, ours/MLServer"]["value"] == round(5 / 60, 3)
    assert not [name for name in checks if "ceiling" in name]


def test_a_server_left_out_leaves_out_its_targets_and_columns() -> None:
    report = _report(["ceiling", "ours"])
    report["targets"] = targets(report)
    assert not [c for c in report["targets"] if "mlflow" in c["check"] or "MLS" in c["check"]]
    assert "ours/ceiling" in markdown_report(report)
    assert "mlflow" not in markdown_report(report).split("\n\n")[1]


def test_protocol_targets_compare_v2_with_invocations_and_grpc_with_v2() -> None:
    report = _report(["ours"])
    rps = {"invocations": 5000, "v2 columns": 4600, "v2 matrix": 4400}
    rps |= {"grpc columns": 4700, "grpc matrix": 4000}
    report["protocols"] = {
        "linear": {
            name: {"requests_per_s": value, "server_cpu_us": 150.0, "p50_ms": 10.0}
            | {"p99_ms": 20.0, "failed": 0, "tool": "wrk"}
            for name, value in rps.items()
        }
    }
    report["targets"] = targets(report)
    checks = {c["check"]: c for c in report["targets"]}
    assert checks["c64 1-row req/s, v2 columns/invocations"]["met"] is True
    assert checks["c64 1-row req/s, v2 matrix/invocations"]["value"] == 0.88
    assert checks["c64 1-row req/s, v2 matrix/invocations"]["met"] is False
    assert checks["c64 1-row req/s, grpc columns/v2 columns"]["met"] is True
    assert checks["c64 1-row req/s, grpc matrix/v2 matrix"]["met"] is False
    assert "| linear | grpc matrix | 4000 | 150 |" in markdown_report(report)
