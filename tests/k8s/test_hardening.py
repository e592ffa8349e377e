"""Hardening: the Pod Security Standards' `restricted` profile, and what we add to it.

The `restricted` checks follow https://kubernetes.io/docs/concepts/security/pod-security-standards/
(as Pod Security Admission enforces them on the namespace); a pod failing one would be rejected
by the cluster, so catching it here saves a failed deploy.
"""

from __future__ import annotations

import re

import pytest
import sqlalchemy
import yaml

from tests.k8s.manifests import (
    K8S,
    OUR_IMAGE,
    Obj,
    Pod,
    containers,
    env_of,
    image_name,
    pod_templates,
    secret_value,
)

pytestmark = pytest.mark.k8s

RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
SECRET_LIKE_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|CREDENTIAL", re.IGNORECASE)
PLACEHOLDER = "CHANGE-ME"
# Secret keys that name things rather than hold secrets: placeholders are not required there.
NON_SECRET_KEYS = {"MLFLOW_TRACKING_USERNAME"}


def _restricted_violations(pod: Pod) -> list[str]:
    spec = pod.spec
    pod_ctx = spec.get("securityContext", {})
    problems = [f"host namespace {k}" for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k)]
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            problems.append(f"volume {volume['name']} of type {sorted(kinds)}")
    if pod_ctx.get("runAsUser") == 0:
        problems.append("pod runAsUser 0")
    for c in containers(spec):
        problems += [f"{c['name']}: {p}" for p in _container_violations(c, pod_ctx)]
    return problems


def _container_violations(c: Obj, pod_ctx: Obj) -> list[str]:
    ctx = c.get("securityContext", {})
    problems = []
    if ctx.get("privileged"):
        problems.append("privileged")
    if ctx.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation is not false")
    capabilities = ctx.get("capabilities", {})
    if "ALL" not in capabilities.get("drop", []):
        problems.append("capabilities not dropped (ALL)")
    if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
        problems.append(f"capabilities added: {capabilities['add']}")
    if ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is not True:
        problems.append("runAsNonRoot is not true")
    if ctx.get("runAsUser") == 0:
        problems.append("runAsUser 0")
    seccomp = ctx.get("seccompProfile", pod_ctx.get("seccompProfile", {})).get("type")
    if seccomp not in {"RuntimeDefault", "Localhost"}:
        problems.append(f"seccompProfile {seccomp}")
    if any(port.get("hostPort") for port in c.get("ports", [])):
        problems.append("hostPort")
    return problems


def test_every_pod_meets_the_restricted_profile(objs: list[Obj]) -> None:
    problems = {p.owner: v for p in pod_templates(objs) if (v := _restricted_violations(p))}
    assert not problems


def test_the_namespace_enforces_the_restricted_profile(objs: list[Obj]) -> None:
    (namespace,) = [o for o in objs if o["kind"] == "Namespace"]
    labels = namespace["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"


def test_every_container_has_a_read_only_root_file_system(objs: list[Obj]) -> None:
    writable = [
        f"{p.owner}/{c['name']}"
        for p in pod_templates(objs)
        for c in containers(p.spec)
        if c.get("securityContext", {}).get("readOnlyRootFilesystem") is not True
    ]
    assert not writable


def test_no_pod_mounts_a_service_account_token(objs: list[Obj]) -> None:
    # None of our pods talks to the Kubernetes API; a mounted token would only be a gift to an
    # attacker who gets code execution.
    mounting = [
        p.owner for p in pod_templates(objs) if p.spec.get("automountServiceAccountToken", True)
    ]
    assert not mounting
    accounts = [o for o in objs if o["kind"] == "ServiceAccount"]
    assert accounts
    assert all(a.get("automountServiceAccountToken") is False for a in accounts)
    assert all(p.spec.get("serviceAccountName") for p in pod_templates(objs))


def test_every_container_has_requests_and_limits(objs: list[Obj]) -> None:
    missing = [
        f"{p.owner}/{c['name']}: {kind}.{resource}"
        for p in pod_templates(objs)
        for c in containers(p.spec)
        for kind in ("requests", "limits")
        for resource in ("cpu", "memory")
        if resource not in c.get("resources", {}).get(kind, {})
    ]
    assert not missing


def test_every_image_is_pinned_to_a_full_version(objs: list[Obj]) -> None:
    # Ours carries the git commit `make k8s-deploy` built; every other image a full release
    # version (postgres:17.10, not postgres:17), which Dependabot moves (.github/dependabot.yml).
    unpinned = [
        f"{p.owner}/{c['name']}: {c['image']}"
        for p in pod_templates(objs)
        for c in containers(p.spec)
        if "@sha256:" not in c["image"]
        and image_name(c["image"]) != OUR_IMAGE
        and not re.search(r":v?\d+\.\d+(\.\d+)?(-[\w.]+)?$", c["image"])
    ]
    assert not unpinned


def test_writable_paths_are_volumes(objs: list[Obj]) -> None:
    # With a read-only root file system, /tmp must be a volume or Python's tempfile fails.
    for pod in pod_templates(objs):
        for c in containers(pod.spec):
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{pod.owner}/{c['name']} has no /tmp volume"


def test_only_the_model_servers_api_is_exposed_outside_the_cluster(objs: list[Obj]) -> None:
    assert not {o["kind"] for o in objs} & {"Gateway", "HTTPRoute", "Route"}
    services = [o for o in objs if o["kind"] == "Service"]
    assert services
    assert all(s["spec"].get("type", "ClusterIP") == "ClusterIP" for s in services)
    for ingress in (o for o in objs if o["kind"] == "Ingress"):
        assert ingress["spec"]["tls"], "TLS only"
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["backend"]["service"]["name"] == "model-server"
                assert not path["path"].startswith(("/metrics", "/admin")), path["path"]
                assert path["path"] != "/", "the API's paths only"


def test_only_the_tracking_server_and_its_setup_job_hold_the_admin_password(
    objs: list[Obj],
) -> None:
    readers = set()
    for pod in pod_templates(objs):
        for c in containers(pod.spec):
            names = [s["secretRef"]["name"] for s in c.get("envFrom", []) if "secretRef" in s]
            names += [
                v["valueFrom"]["secretKeyRef"]["name"]
                for v in c.get("env", [])
                if "secretKeyRef" in v.get("valueFrom", {})
            ]
            # dev's generated Secrets carry a hash suffix: mlflow-admin-<hash>
            if any(n == "mlflow-admin" or n.startswith("mlflow-admin-") for n in names):
                readers.add(pod.owner)
    assert readers == {"Deployment/mlflow", "Job/mlflow-setup"}


def test_secret_looking_variables_come_from_secrets(objs: list[Obj]) -> None:
    literal = [
        f"{p.owner}/{c['name']}: {var['name']}"
        for p in pod_templates(objs)
        for c in containers(p.spec)
        for var in c.get("env", [])
        if SECRET_LIKE_NAME.search(var["name"]) and "value" in var
    ]
    assert not literal


def test_committed_secrets_hold_placeholders_only(objs: list[Obj]) -> None:
    for secret in (o for o in objs if o["kind"] == "Secret"):
        name = secret["metadata"]["name"]
        for key in secret.get("data", {}):
            value = secret_value(objs, name, key)
            assert key in NON_SECRET_KEYS or PLACEHOLDER in str(value), f"{name}/{key}"


def test_database_uris_name_a_driver_our_image_installs(objs: list[Obj]) -> None:
    # A bare postgresql:// means psycopg2 to SQLAlchemy before 2.1 and psycopg 3 after: the URIs
    # name the driver, and it must be one requirements.txt installs (this venv has the same).
    uris = [
        value
        for pod in pod_templates(objs)
        for c in containers(pod.spec)
        for value in env_of(c, objs).values()
        if value.startswith("postgres")
    ]
    uris += [
        str(value)
        for secret in yaml.safe_load_all((K8S / "overlays/prod/secrets.example.yaml").read_text())
        for value in secret["stringData"].values()
        if str(value).startswith("postgres")
    ]
    assert uris
    for uri in uris:
        url = sqlalchemy.engine.make_url(uri)
        assert "+" in url.drivername, f"no driver named in {url!r}"
        url.get_dialect().import_dbapi()  # ImportError: the driver is not installed
