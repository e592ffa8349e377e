"""The model server's Deployment agrees with the server, its config, the image and the Makefile."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops.config import load_config
from tests.k8s.manifests import (
    OUR_IMAGE,
    REPO,
    Obj,
    container,
    containers,
    env_of,
    find,
    image_name,
    makefile_default,
    pod_of,
    pod_templates,
)

pytestmark = pytest.mark.k8s

SERVER_SOURCES = REPO / "mlops" / "serving"
PROBE_PATHS = {
    "startupProbe": "/v2/health/live",
    "livenessProbe": "/v2/health/live",
    "readinessProbe": "/v2/health/ready",
}


def _server(objs: list[Obj]) -> Obj:
    return container(pod_of(objs, "Deployment/model-server"), "model-server")


def _container_port(c: Obj, port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in c["ports"] if p["name"] == port]
    return int(number)


def test_probes_ask_the_servers_health_endpoints_on_its_probe_port(
    overlay_objs: list[Obj],
) -> None:
    server = _server(overlay_objs)
    listening = int(env_of(server, overlay_objs)["PROBE_PORT"])  # a thread answers (probes.py)
    for probe, path in PROBE_PATHS.items():
        http_get = server[probe]["httpGet"]
        assert http_get["path"] == path
        assert _container_port(server, http_get["port"]) == listening
    assert env_of(server, overlay_objs)["HOST"] == "0.0.0.0"


def test_the_probe_paths_exist_in_the_server() -> None:
    sources = list(SERVER_SOURCES.rglob("*.py")) if SERVER_SOURCES.is_dir() else []
    if not sources:
        pytest.skip("mlops/serving is not in this tree yet")
    text = "\n".join(p.read_text() for p in sources)
    for path in {*PROBE_PATHS.values(), "/metrics"}:
        assert f'"{path}"' in text, f"the server defines no route {path}"


def test_grace_period_covers_the_servers_drain(overlay_objs: list[Obj]) -> None:
    pod = pod_of(overlay_objs, "Deployment/model-server")
    server = container(pod, "model-server")
    config_arg = server["args"][server["args"].index("--config") + 1]
    serve = load_config(REPO / config_arg).serve
    assert "lifecycle" not in server, "the server drains itself: a preStop sleep adds to it"
    assert pod.spec["terminationGracePeriodSeconds"] > serve.drain_s + serve.drain_timeout_s


def test_rollouts_never_lower_capacity(overlay_objs: list[Obj]) -> None:
    deployment = find(overlay_objs, "Deployment", "model-server")
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert "replicas" not in deployment["spec"], "the HPA owns replicas"


def test_autoscaler_and_disruption_budget_cover_the_server(overlay_objs: list[Obj]) -> None:
    deployment = find(overlay_objs, "Deployment", "model-server")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    hpa = find(overlay_objs, "HorizontalPodAutoscaler", "model-server")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "model-server"
    assert hpa["spec"]["minReplicas"] >= 2
    pdb = find(overlay_objs, "PodDisruptionBudget", "model-server")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"], "drains could never proceed"


def test_service_reaches_the_servers_port(overlay_objs: list[Obj]) -> None:
    service = find(overlay_objs, "Service", "model-server")
    pod = pod_of(overlay_objs, "Deployment/model-server")
    assert service["spec"]["selector"].items() <= pod.labels.items()
    ports = {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}
    env = env_of(_server(overlay_objs), overlay_objs)
    assert _container_port(_server(overlay_objs), ports["http"]) == int(env["PORT"])
    assert _container_port(_server(overlay_objs), ports["probes"]) == int(env["PROBE_PORT"])
    assert _container_port(_server(overlay_objs), ports["grpc"]) == int(env["GRPC_PORT"])


def test_prometheus_annotations_point_at_metrics(overlay_objs: list[Obj]) -> None:
    pod = pod_of(overlay_objs, "Deployment/model-server")
    assert pod.annotations["prometheus.io/scrape"] == "true"
    assert pod.annotations["prometheus.io/path"] == "/metrics"
    assert int(pod.annotations["prometheus.io/port"]) == int(
        env_of(_server(overlay_objs), overlay_objs)["PROBE_PORT"]
    )


def test_service_monitor_scrapes_the_servers_service(built: dict[str, list[Obj]]) -> None:
    objs = built["prod+servicemonitor+monitoring"]
    monitor = find(objs, "ServiceMonitor", "model-server")
    service = find(objs, "Service", "model-server")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"


def test_config_is_mounted_from_the_generated_config_map(overlay_objs: list[Obj]) -> None:
    for pod in pod_templates(overlay_objs):
        volumes = {v["name"]: v for v in pod.spec.get("volumes", [])}
        for c in containers(pod.spec):
            if image_name(c["image"]) != OUR_IMAGE:
                continue
            (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == "/app/configs"]
            assert volumes[mount["name"]]["configMap"]["name"].startswith("mlops-config-")


def test_our_image_is_the_one_the_makefile_builds(overlay_objs: list[Obj]) -> None:
    assert makefile_default("IMAGE") == OUR_IMAGE
    ours = [
        c
        for p in pod_templates(overlay_objs)
        for c in containers(p.spec)
        if "scripts/" in " ".join(c.get("args", []) + c.get("command", []))
    ]
    assert len(ours) >= 4
    assert {image_name(c["image"]) for c in ours} == {OUR_IMAGE}


def test_pods_of_our_image_run_as_the_images_user(overlay_objs: list[Obj]) -> None:
    user = _dockerfile_user()
    for pod in pod_templates(overlay_objs):
        if any(image_name(c["image"]) == OUR_IMAGE for c in containers(pod.spec)):
            ctx = pod.spec["securityContext"]
            assert f"{ctx['runAsUser']}:{ctx['runAsGroup']}" == user, pod.owner


def _dockerfile_user() -> str:
    users = [
        line.split()[1]
        for line in Path(REPO / "Dockerfile").read_text().splitlines()
        if line.startswith("USER ")
    ]
    return users[-1]


def test_tracking_server_answers_the_names_its_clients_use(overlay_objs: list[Obj]) -> None:
    tracking = container(pod_of(overlay_objs, "Deployment/mlflow"), "mlflow")
    allowed = env_of(tracking, overlay_objs)["MLFLOW_ALLOWED_HOSTS"].split(",")
    assert "$MLFLOW_ALLOWED_HOSTS" in tracking["args"][0]
    assert "--app-name basic-auth" in tracking["args"][0]
    for pod in pod_templates(overlay_objs):
        for c in containers(pod.spec):
            uri = env_of(c, overlay_objs).get("MLFLOW_TRACKING_URI")
            if uri:
                assert uri.removeprefix("http://").split("/")[0] in allowed, pod.owner
