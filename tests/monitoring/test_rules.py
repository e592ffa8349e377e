"""The alert rules: valid for Prometheus, unit-tested with promtool, one source for the operator."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.monitoring.promql import (
    PROMETHEUS_RULE,
    RULES,
    RULES_TEST,
    alerts,
    quantity,
    render_prometheus_rule,
)

pytestmark = pytest.mark.monitoring


def _promtool(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_accepts_the_rule_file(promtool: str) -> None:
    result = _promtool(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_passes_its_promtool_unit_tests(promtool: str) -> None:
    result = _promtool(promtool, "test", "rules", str(RULES_TEST))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_quiet() -> None:
    cases = [
        case
        for test in yaml.safe_load(RULES_TEST.read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    for alert in alerts():
        expected = [case["exp_alerts"] for case in cases if case["alertname"] == alert["alert"]]
        assert any(expected), f"{alert['alert']}: no test where it fires"
        assert [] in expected, f"{alert['alert']}: no test where it stays quiet"


def test_prometheus_rule_is_generated_from_the_rule_file() -> None:
    assert PROMETHEUS_RULE.read_text() == render_prometheus_rule(), (
        "prometheus-rule.yaml is stale: run `.venv/bin/python -m tests.monitoring.promql sync`"
    )


def test_every_alert_compares_a_quantity_with_a_number() -> None:
    # The live test evaluates the quantity; it needs this shape to find it.
    for alert in alerts():
        assert quantity(alert["expr"]), alert["alert"]
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}
        assert {"summary", "description"} <= set(alert["annotations"])
