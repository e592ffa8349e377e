"""Default deny with explicit allowances: every flow the system needs is open, and no other.

Flows are derived from the manifests themselves (a pod's MLFLOW_TRACKING_URI names the server it
must reach), so a new client without the right label, or a renamed Service, fails here.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.k8s.manifests import Obj, Pod, containers, env_of, pod_templates
from tests.k8s.netpol import Endpoint, allowed, matches

pytestmark = pytest.mark.k8s

KUBE_DNS = Endpoint("kube-system", {"k8s-app": "kube-dns"})
PROMETHEUS = Endpoint("monitoring", {"app.kubernetes.io/name": "prometheus"})
# Outside the cluster: prod's database placeholder range (RFC 5737) and a public S3 address.
EXTERNAL_DATABASE = Endpoint(ip="192.0.2.10")
PUBLIC_ADDRESS = Endpoint(ip="52.216.8.1")


def _endpoint(pod: Pod) -> Endpoint:
    ports = [port for c in containers(pod.spec) for port in c.get("ports", [])]
    return Endpoint(pod.namespace, pod.labels, {p["name"]: p["containerPort"] for p in ports})


def _pods(objs: list[Obj]) -> list[tuple[Pod, Endpoint]]:
    return [(p, _endpoint(p)) for p in pod_templates(objs)]


def _namespace(objs: list[Obj]) -> str:
    (name,) = [o["metadata"]["name"] for o in objs if o["kind"] == "Namespace"]
    return str(name)


def _service_backends(objs: list[Obj], host: str, port: int) -> list[tuple[Endpoint, int]]:
    """The pods and container ports behind `host:port` (a Service name); [] if none is."""
    backends = []
    for service in (o for o in objs if o["kind"] == "Service"):
        if service["metadata"]["name"] != host.split(".")[0]:
            continue
        for service_port in (p for p in service["spec"]["ports"] if p["port"] == port):
            for pod, endpoint in _pods(objs):
                if matches({"matchLabels": service["spec"]["selector"]}, pod.labels):
                    target = service_port.get("targetPort", port)
                    number = endpoint.named_ports.get(target) if isinstance(target, str) else target
                    assert number is not None, f"{host}:{port} targets no port of {pod.owner}"
                    backends.append((endpoint, number))
    return backends


def _targets(objs: list[Obj], uri: str, external: Endpoint) -> list[tuple[Endpoint, int]]:
    parts = urlsplit(uri)
    if parts.hostname is None:  # only known to the operator (prod Secrets): outside the cluster
        return [(external, 5432)]
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme, 5432)
    inside = _service_backends(objs, parts.hostname, port)
    return inside or [(external, port)]


def test_every_pod_can_resolve_names(objs: list[Obj]) -> None:
    blocked = [p.owner for p, e in _pods(objs) if not allowed(objs, e, KUBE_DNS, 53, "UDP")]
    assert not blocked


def test_every_tracking_client_reaches_the_tracking_server(objs: list[Obj]) -> None:
    clients = 0
    for pod, endpoint in _pods(objs):
        for c in containers(pod.spec):
            uri = env_of(c, objs).get("MLFLOW_TRACKING_URI")
            if uri:
                clients += 1
                (target,) = _service_backends(objs, urlsplit(uri).hostname or "", 5000)
                assert allowed(objs, endpoint, *target), f"{pod.owner} cannot reach {uri}"
    assert clients >= 5


def test_database_clients_reach_postgresql(objs: list[Obj]) -> None:
    clients = 0
    for pod, endpoint in _pods(objs):
        for c in containers(pod.spec):
            for name, value in env_of(c, objs).items():
                if name in {"MLFLOW_BACKEND_STORE_URI", "OPTUNA_STORAGE"}:
                    clients += 1
                    for target in _targets(objs, value, EXTERNAL_DATABASE):
                        assert allowed(objs, endpoint, *target), f"{pod.owner}: {name}"
    assert clients >= 2


def test_the_tracking_server_reaches_the_object_store(objs: list[Obj]) -> None:
    (pod,) = [p for p in pod_templates(objs) if p.owner == "Deployment/mlflow"]
    s3_clients = [c for c in containers(pod.spec) if "AWS_ACCESS_KEY_ID" in env_of(c, objs)]
    assert s3_clients
    for c in s3_clients:  # not the metrics exporter, which reads local files only
        s3 = env_of(c, objs).get("MLFLOW_S3_ENDPOINT_URL", "https://s3.amazonaws.com")
        for target in _targets(objs, s3, PUBLIC_ADDRESS):
            assert allowed(objs, _endpoint(pod), *target), c["name"]


def test_only_the_tracking_server_and_database_clients_reach_storage(objs: list[Obj]) -> None:
    for pod, endpoint in _pods(objs):
        for host, port, label in (("postgres", 5432, "db"), ("object-store", 9000, "object-store")):
            for target in _service_backends(objs, host, port):
                may = pod.labels.get(f"mlops/{label}-client") == "true"
                assert allowed(objs, endpoint, *target) is may, f"{pod.owner} -> {host}"


def test_only_object_store_clients_reach_the_internet(objs: list[Obj]) -> None:
    # In prod the tracking server (artifacts), the retrain CronJob (DATA_SOURCE), the backup
    # CronJob (uploads) and the batch-score Job (INPUT, OUTPUT) talk to S3 over HTTPS; nothing
    # else leaves the cluster.
    outside = not _service_backends(objs, "object-store", 9000)
    s3_clients = {"Deployment/mlflow", "CronJob/retrain", "CronJob/backup", "Job/batch-score"}
    for pod, endpoint in _pods(objs):
        may = outside and pod.owner in s3_clients
        assert allowed(objs, endpoint, PUBLIC_ADDRESS, 443) is may, pod.owner


def test_the_ingress_controller_reaches_the_model_server(built: dict[str, list[Obj]]) -> None:
    objs = built["prod"]
    (target,) = _service_backends(objs, "model-server", 8080)
    (ingress,) = [o for o in objs if o["kind"] == "Ingress"]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    controller = Endpoint("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
    assert allowed(objs, controller, *target)
    assert not allowed(
        objs, Endpoint("ingress-nginx", {}), *_service_backends(objs, "mlflow", 5000)[0]
    )


def test_model_server_admits_its_clients_and_prometheus_only(objs: list[Obj]) -> None:
    namespace = _namespace(objs)
    (target,) = _service_backends(objs, "model-server", 8080)
    (probes,) = _service_backends(objs, "model-server", 8082)  # /metrics, from a thread
    client = Endpoint(namespace, {"mlops/model-client": "true"})
    assert allowed(objs, client, *target)
    assert allowed(objs, PROMETHEUS, *probes)
    assert not allowed(objs, PROMETHEUS, *target)
    assert not allowed(objs, Endpoint(namespace, {"app": "other"}), *target)
    assert not allowed(objs, Endpoint("default", {"mlops/model-client": "true"}), *target)


def test_tracking_server_is_closed_to_other_namespaces(objs: list[Obj]) -> None:
    (target,) = _service_backends(objs, "mlflow", 5000)
    outsider = Endpoint("default", {"mlops/tracking-client": "true"})
    assert not allowed(objs, outsider, *target)
    assert not allowed(objs, PROMETHEUS, *target)
