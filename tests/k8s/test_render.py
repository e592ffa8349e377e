"""Every build renders, matches the Kubernetes API schemas, and refers only to objects it has."""

from __future__ import annotations

import subprocess

import kubernetes_validate
import pytest
import yaml

from tests.k8s.manifests import (
    K8S,
    REPO,
    Obj,
    containers,
    find,
    makefile_default,
    pod_templates,
)

pytestmark = pytest.mark.k8s

# The oldest Kubernetes we support (Job podFailurePolicy and backoffLimitPerIndex on by default)
# and the newest whose schemas kubernetes-validate ships; both are checked, strictly (unknown
# fields are errors), from the schemas inside the wheel: no network.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
# Custom resources have no schema in kubernetes-validate; tests/k8s/test_serving.py and
# tests/k8s/test_monitoring.py check these.
CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", kind)
    for kind in ("ServiceMonitor", "PodMonitor", "PrometheusRule")
}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_matches_the_kubernetes_schema(objs: list[Obj], version: str) -> None:
    errors = []
    for obj in objs:
        if (obj["apiVersion"], obj["kind"]) in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            path = ".".join(str(p) for p in err.path)
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {err.message}")
        except kubernetes_validate.SchemaNotFoundError as err:
            errors.append(err.message)
    assert not errors, "\n".join(errors)


def test_every_object_is_in_the_overlay_namespace(objs: list[Obj]) -> None:
    namespaces = [o["metadata"]["name"] for o in objs if o["kind"] == "Namespace"]
    assert len(namespaces) == 1
    outside = [
        f"{o['kind']}/{o['metadata']['name']}"
        for o in objs
        if o["kind"] != "Namespace" and o["metadata"].get("namespace") != namespaces[0]
    ]
    assert not outside, f"not in namespace {namespaces[0]}: {outside}"


def test_every_object_and_pod_carries_the_part_of_label(objs: list[Obj]) -> None:
    unlabelled = [
        f"{o['kind']}/{o['metadata']['name']}"
        for o in objs
        if o["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") != "mlops"
    ]
    unlabelled += [
        p.owner for p in pod_templates(objs) if p.labels.get("app.kubernetes.io/part-of") != "mlops"
    ]
    assert not unlabelled


def _references(objs: list[Obj]) -> set[tuple[str, str]]:
    refs = set()
    for pod in pod_templates(objs):
        for volume in pod.spec.get("volumes", []):
            if "configMap" in volume:
                refs.add(("ConfigMap", volume["configMap"]["name"]))
            if "secret" in volume:
                refs.add(("Secret", volume["secret"]["secretName"]))
            if "persistentVolumeClaim" in volume:
                refs.add(("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]))
        refs.add(("ServiceAccount", pod.spec.get("serviceAccountName", "default")))
        for c in containers(pod.spec):
            for source in c.get("envFrom", []):
                if "configMapRef" in source:
                    refs.add(("ConfigMap", source["configMapRef"]["name"]))
                else:
                    refs.add(("Secret", source["secretRef"]["name"]))
            for var in c.get("env", []):
                ref = var.get("valueFrom", {})
                if "secretKeyRef" in ref and not ref["secretKeyRef"].get("optional"):
                    refs.add(("Secret", ref["secretKeyRef"]["name"]))
                if "configMapKeyRef" in ref:
                    refs.add(("ConfigMap", ref["configMapKeyRef"]["name"]))
    return refs


def _prod_example_secrets() -> list[Obj]:
    return list(yaml.safe_load_all((K8S / "overlays/prod/secrets.example.yaml").read_text()))


def test_every_referenced_object_exists(objs: list[Obj]) -> None:
    # Prod's Secrets are created by the operator from secrets.example.yaml, not by the overlay.
    present = {(o["kind"], o["metadata"]["name"]) for o in objs}
    present |= {("Secret", s["metadata"]["name"]) for s in _prod_example_secrets()}
    missing = sorted(_references(objs) - present)
    assert not missing, f"referenced but not defined: {missing}"


def test_prod_example_secrets_hold_every_key_prod_reads(built: dict[str, list[Obj]]) -> None:
    example = {s["metadata"]["name"]: set(s["stringData"]) for s in _prod_example_secrets()}
    for pod in pod_templates(built["prod"]):
        for c in containers(pod.spec):
            for var in c.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in example.get(ref["name"], set()), (pod.owner, ref)


def test_prod_overlay_never_applies_secrets(built: dict[str, list[Obj]]) -> None:
    # `kubectl apply -k` would overwrite the operator's real values with placeholders.
    assert not [o for o in built["prod"] if o["kind"] == "Secret"]


def test_config_map_holds_every_config_file(overlay_objs: list[Obj]) -> None:
    config_maps = [o for o in overlay_objs if o["metadata"]["name"].startswith("mlops-config")]
    assert len(config_maps) == 1
    files = {p.name for p in (REPO / "configs").glob("*.yaml")}
    assert set(config_maps[0]["data"]) == files


def test_pods_use_the_makefiles_default_config(overlay_objs: list[Obj]) -> None:
    default_config = makefile_default("CONFIG")
    for pod in pod_templates(overlay_objs):
        for c in containers(pod.spec):
            words = " ".join(c.get("command", []) + c.get("args", [])).split()
            for i, word in enumerate(words[:-1]):
                if word == "--config":
                    assert words[i + 1] == default_config, (pod.owner, c["name"])


def test_the_tracking_server_runs_the_mlflow_version_we_pin(overlay_objs: list[Obj]) -> None:
    pinned = next(
        line.split("==")[1]
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if line.startswith("mlflow==")
    )
    deployment = find(overlay_objs, "Deployment", "mlflow")
    images = {c["image"] for c in containers(deployment["spec"]["template"]["spec"])}
    assert images == {f"ghcr.io/mlflow/mlflow:v{pinned}-full"}


def test_deploy_script_swaps_in_the_requested_image(tmp_path: object) -> None:
    result = subprocess.run(
        [str(K8S / "deploy.sh"), "render", "dev", "registry.example:5000/team/mlops:abc123"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    images = {
        c["image"]
        for pod in pod_templates([o for o in yaml.safe_load_all(result.stdout) if o])
        for c in containers(pod.spec)
    }
    assert "registry.example:5000/team/mlops:abc123" in images
    assert not any(i.startswith("ghcr.io/example/") for i in images)


def test_deploy_script_rejects_an_image_without_tag() -> None:
    result = subprocess.run(
        [str(K8S / "deploy.sh"), "render", "dev", "registry.example:5000/team/mlops"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert "NAME:TAG" in result.stderr
