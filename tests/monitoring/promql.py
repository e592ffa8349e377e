"""The monitoring component's sources, read as data: alert rules, dashboard queries, PromQL text.

rules.yaml is the one source of the alerts; prometheus-rule.yaml wraps its groups in a
PrometheusRule and is generated from it:

    .venv/bin/python -m tests.monitoring.promql sync
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import yaml

from tests.conftest import REPO

COMPONENT = REPO / "k8s" / "components" / "monitoring"
RULES = COMPONENT / "rules.yaml"
RULES_TEST = COMPONENT / "rules.test.yaml"
PROMETHEUS_RULE = COMPONENT / "prometheus-rule.yaml"
DASHBOARDS = COMPONENT / "dashboards"
# Grafana's variables, as an "All" selection expands them, so that queries run in Prometheus.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "5m",
    "$namespace": ".*",
    "$job": ".*",
}
_HEADER = """\
# Generated from rules.yaml (its groups, unchanged) by `python -m tests.monitoring.promql sync`:
# edit rules.yaml, not this file. A test checks that the two agree.
"""
_COMPARISON = re.compile(r"(==|!=|>=|<=|>|<)\s*(bool\s+)?-?[0-9.]+(e[+-]?[0-9]+)?\s*$")


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(RULES.read_text())["groups"]
    return groups


def alerts() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"] if "alert" in rule]


def render_prometheus_rule() -> str:
    resource = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "mlops-alerts", "labels": {"app.kubernetes.io/name": "mlops-alerts"}},
        "spec": {"groups": rule_groups()},
    }
    return _HEADER + yaml.dump(resource, Dumper=_BlockDumper, sort_keys=False, width=100)


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (PromQL) as `|` blocks, as rules.yaml writes them."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _represent_str)


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel but rows, including those folded inside a collapsed row."""
    found: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        found += [panel] if panel["type"] != "row" else panel.get("panels", [])
    return found


def dashboard_expressions() -> list[str]:
    return [
        target["expr"]
        for dashboard in dashboards().values()
        for panel in panels(dashboard)
        for target in panel["targets"]
    ]


def to_prometheus(expr: str) -> str:
    """A dashboard query with Grafana's variables replaced by what "All" would send."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def quantity(expr: str) -> str:
    """`<quantity> <comparison> <number>` -> `<quantity>`: what an alert compares, which returns
    series when all is well (the alert itself returns none then)."""
    match = _COMPARISON.search(expr.strip())
    if match is None:
        raise ValueError(f"alert expression does not end in a comparison with a number: {expr!r}")
    return expr.strip()[: match.start()].strip()


def main(argv: list[str]) -> int:
    if argv != ["sync"]:
        print("usage: python -m tests.monitoring.promql sync", file=sys.stderr)
        return 2
    PROMETHEUS_RULE.write_text(render_prometheus_rule())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
