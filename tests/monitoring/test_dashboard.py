"""The Grafana dashboards: valid JSON Grafana can import, a query per panel, PromQL that parses."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.monitoring.promql import (
    alerts,
    dashboard_expressions,
    dashboards,
    panels,
    to_prometheus,
)

pytestmark = pytest.mark.monitoring

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def test_there_is_a_dashboard() -> None:
    assert dashboards()


def test_every_dashboard_has_a_unique_uid_and_title() -> None:
    uids = [d["uid"] for d in dashboards().values()]
    assert len(set(uids)) == len(uids)
    assert all(d["title"] for d in dashboards().values())


def test_every_dashboard_offers_datasource_namespace_and_job_variables() -> None:
    for name, dashboard in dashboards().items():
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource", name
        assert variables["datasource"]["query"] == "prometheus", name
        for label in ("namespace", "job"):
            assert variables[label]["includeAll"] and variables[label]["allValue"] == ".*", name


def test_every_panel_queries_the_chosen_datasource() -> None:
    for name, dashboard in dashboards().items():
        for panel in panels(dashboard):
            where = f"{name}: {panel['title']}"
            assert panel["datasource"] == DATASOURCE, where
            assert panel["targets"], where
            for target in panel["targets"]:
                assert target["datasource"] == DATASOURCE, where
                assert target["expr"].strip(), where


def test_panels_neither_overlap_nor_leave_the_grid() -> None:
    for name, dashboard in dashboards().items():
        cells: set[tuple[int, int]] = set()
        for panel in dashboard["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, f"{name}: {panel['title']}"
            area = {
                (x, y)
                for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])
            }
            assert not area & cells, f"{name}: {panel['title']} overlaps another panel"
            cells |= area


def test_every_expression_parses(promtool: str, tmp_path: Path) -> None:
    # promtool has no "check this expression" command; recording rules it checks offline.
    expressions = [to_prometheus(e) for e in dashboard_expressions()]
    expressions += [alert["expr"] for alert in alerts()]
    rules = [{"record": f"check:expression_{i}", "expr": e} for i, e in enumerate(expressions)]
    path = tmp_path / "expressions.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "expressions", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
