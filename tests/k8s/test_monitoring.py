"""Monitoring in the manifests: the tracking server's metrics port, its scrape, the alert rules and
dashboards of components/monitoring as the builds carry them (PromQL itself: tests/monitoring)."""

from __future__ import annotations

import pytest
import yaml

from tests.k8s.manifests import K8S, Obj, container, find, pod_of
from tests.k8s.netpol import Endpoint, allowed
from tests.k8s.test_network import PROMETHEUS

pytestmark = pytest.mark.k8s

WITH_MONITORING = (
    "dev+retrain-schedule+backup+servicemonitor+monitoring",
    "prod+servicemonitor+monitoring",
)
COMPONENT = K8S / "components" / "monitoring"


def _flag_value(script: str, flag: str) -> str:
    words = script.replace("\\\n", " ").split()
    return words[words.index(flag) + 1]


def test_tracking_server_writes_metrics_where_the_exporter_reads(overlay_objs: list[Obj]) -> None:
    pod = pod_of(overlay_objs, "Deployment/mlflow")
    server, exporter = container(pod, "mlflow"), container(pod, "metrics")
    assert _flag_value(server["args"][0], "--expose-prometheus") == '"$PROMETHEUS_MULTIPROC_DIR"'
    directories = set()
    for c in (server, exporter):
        env = {v["name"]: v["value"] for v in c["env"] if "value" in v}
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        directories.add((env["PROMETHEUS_MULTIPROC_DIR"], mounts[env["PROMETHEUS_MULTIPROC_DIR"]]))
    ((_, volume),) = directories
    (spec,) = [v for v in pod.spec["volumes"] if v["name"] == volume]
    assert "emptyDir" in spec, "each pod's own workers only"


def test_tracking_server_metrics_are_announced_on_the_exporters_port(
    overlay_objs: list[Obj],
) -> None:
    pod = pod_of(overlay_objs, "Deployment/mlflow")
    exporter = container(pod, "metrics")
    port = {v["name"]: v["value"] for v in exporter["env"]}["METRICS_PORT"]
    assert [p["containerPort"] for p in exporter["ports"]] == [int(port)]
    assert pod.annotations["prometheus.io/scrape"] == "true"
    assert pod.annotations["prometheus.io/port"] == port
    assert pod.annotations["prometheus.io/path"] == "/metrics"


def test_prometheus_reaches_the_tracking_servers_metrics_not_its_api(objs: list[Obj]) -> None:
    pod = pod_of(objs, "Deployment/mlflow")
    target = Endpoint(pod.namespace, pod.labels)
    assert allowed(objs, PROMETHEUS, target, int(pod.annotations["prometheus.io/port"]))
    assert not allowed(objs, PROMETHEUS, target, 5000)
    outsider = Endpoint("default", {"app": "other"})
    assert not allowed(objs, outsider, target, int(pod.annotations["prometheus.io/port"]))


@pytest.mark.parametrize("build", WITH_MONITORING)
def test_pod_monitor_scrapes_the_tracking_servers_exporter(
    built: dict[str, list[Obj]], build: str
) -> None:
    objs = built[build]
    monitor = find(objs, "PodMonitor", "mlflow")
    pod = pod_of(objs, "Deployment/mlflow")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod.labels.items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics"
    assert endpoint["path"] == pod.annotations["prometheus.io/path"]


@pytest.mark.parametrize("build", WITH_MONITORING)
def test_prometheus_rule_carries_the_rule_files_groups(
    built: dict[str, list[Obj]], build: str
) -> None:
    rule = find(built[build], "PrometheusRule", "mlops-alerts")
    groups = yaml.safe_load((COMPONENT / "rules.yaml").read_text())["groups"]
    assert rule["spec"]["groups"] == groups


@pytest.mark.parametrize("build", WITH_MONITORING)
def test_dashboards_config_map_is_what_grafanas_sidecar_loads(
    built: dict[str, list[Obj]], build: str
) -> None:
    config_map = find(built[build], "ConfigMap", "mlops-dashboards")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    files = {p.name: p.read_text() for p in (COMPONENT / "dashboards").glob("*.json")}
    assert files
    assert config_map["data"] == files
