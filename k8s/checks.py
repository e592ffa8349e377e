"""Pre-flight checks and fail-fast diagnosis for k8s/deploy.sh: what is wrong, on which object,
and the command to run next.

    python k8s/checks.py preflight RENDERED.yaml SETTINGS_FILE NAMESPACE IMAGE
    python k8s/checks.py stuck NAMESPACE

`preflight` runs before anything is applied: a placeholder left in the overlay's settings, no
current context or an unreachable cluster, a missing namespace, Secret or Secret key (or a key
still holding CHANGE-ME), a storage class that does not exist, an image the registry does not
have. `stuck` runs between polls while deploy.sh waits: a pod in ImagePullBackOff,
CrashLoopBackOff or CreateContainerConfigError, a pod unschedulable or a PVC Pending for more than
K8S_STUCK_S seconds (default 90). Both print one problem per object and exit 1 if there is any.

The decisions are plain functions of the objects kubectl returns (tests/k8s/test_checks.py tests
them, and deploy.sh against a fake kubectl); only main() talks to kubectl.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]
PLACEHOLDER = "CHANGE-ME"
# Waiting reasons that do not clear up by themselves (ErrImagePull turns into ImagePullBackOff on
# the second failed pull, a few seconds later; a single one can be a registry hiccup).
STUCK_REASONS = {
    "ImagePullBackOff": "describe pod {pod}  (image name and tag; Secret registry-credentials)",
    "ErrImageNeverPull": "describe pod {pod}  (load the image into the nodes, e.g. kind load)",
    "InvalidImageName": "describe pod {pod}",
    "CreateContainerConfigError": "describe pod {pod}  (a Secret, key or ConfigMap it reads)",
    "CrashLoopBackOff": "logs {pod} -c {container} --previous",
}


@dataclass(frozen=True)
class Problem:
    obj: str
    reason: str
    next: str

    def __str__(self) -> str:
        return f"{self.obj}: {self.reason}\n    next: {self.next}"


def placeholder_problems(objs: list[Obj], settings: Path | None) -> list[Problem]:
    """Settings (and any other value outside Secrets) still holding CHANGE-ME."""
    problems = []
    if settings is not None and settings.is_file():
        for number, line in enumerate(settings.read_text().splitlines(), start=1):
            if PLACEHOLDER in line and not line.lstrip().startswith("#"):
                key = line.split("=", 1)[0]
                problems.append(
                    Problem(
                        f"setting {key}", "still holds the placeholder", f"edit {settings}:{number}"
                    )
                )
    if not problems:
        problems = [
            Problem(
                f"{o['kind'].lower()}/{o['metadata']['name']}",
                "holds a CHANGE-ME placeholder",
                "set it in the overlay",
            )
            for o in objs
            if o["kind"] != "Secret" and PLACEHOLDER in json.dumps(o)
        ]
    return problems


def required_secrets(objs: list[Obj]) -> dict[str, set[str]]:
    """Secret name -> the keys pods need, for the Secrets the overlay does not create itself."""
    required: dict[str, set[str]] = {}
    for obj in objs:
        for c in _containers(obj):
            for source in c.get("envFrom", []):
                if "secretRef" in source and not source["secretRef"].get("optional"):
                    required.setdefault(source["secretRef"]["name"], set())
            for var in c.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional"):
                    required.setdefault(ref["name"], set()).add(ref["key"])
    generated = {o["metadata"]["name"] for o in objs if o["kind"] == "Secret"}
    return {name: keys for name, keys in required.items() if name not in generated}


def secret_problems(
    required: dict[str, set[str]], secrets: list[Obj], namespace: str
) -> list[Problem]:
    found = {s["metadata"]["name"]: s.get("data") or {} for s in secrets}
    problems = []
    for name, keys in sorted(required.items()):
        if name not in found:
            fix = "kubectl apply -f my-secrets.yaml  (k8s/overlays/prod/secrets.example.yaml)"
            problems.append(Problem(f"secret/{name}", f"not found in namespace {namespace}", fix))
            continue
        for key in sorted(keys):
            if key not in found[name]:
                problems.append(
                    Problem(
                        f"secret/{name}",
                        f"has no key {key}",
                        f"add {key} to secret/{name} and apply it",
                    )
                )
            elif PLACEHOLDER in base64.b64decode(found[name][key]).decode(errors="replace"):
                problems.append(
                    Problem(
                        f"secret/{name}",
                        f"key {key} still holds CHANGE-ME",
                        f"set {key} in secret/{name} and apply it",
                    )
                )
    return problems


def storage_problems(objs: list[Obj], classes: list[Obj]) -> list[Problem]:
    names = {c["metadata"]["name"] for c in classes}
    default = any(
        c["metadata"].get("annotations", {}).get("storageclass.kubernetes.io/is-default-class")
        == "true"
        for c in classes
    )
    problems = []
    for name, wanted in _claims(objs):
        if wanted is None and not default:
            problems.append(
                Problem(
                    f"persistentvolumeclaim/{name}",
                    "names no storage class and the cluster has no default",
                    "kubectl get storageclass",
                )
            )
        elif wanted is not None and wanted not in names:
            problems.append(
                Problem(
                    f"persistentvolumeclaim/{name}",
                    f"storage class {wanted} does not exist",
                    "kubectl get storageclass  (then STORAGE_CLASS in settings.env)",
                )
            )
    return problems


def pod_problems(pods: list[Obj], now: datetime, stuck_s: float, namespace: str) -> list[Problem]:
    problems = []
    for pod in pods:
        name = pod["metadata"]["name"]
        status = pod.get("status", {})
        for c in status.get("initContainerStatuses", []) + status.get("containerStatuses", []):
            waiting = c.get("state", {}).get("waiting", {})
            hint = STUCK_REASONS.get(waiting.get("reason", ""))
            if hint:
                command = f"kubectl -n {namespace} " + hint.format(pod=name, container=c["name"])
                problems.append(
                    Problem(
                        f"pod/{name}",
                        f"{waiting['reason']}: {waiting.get('message', '')}".strip(": "),
                        command,
                    )
                )
        for condition in status.get("conditions", []):
            if (
                condition.get("reason") == "Unschedulable"
                and _age_s(condition.get("lastTransitionTime"), now) > stuck_s
            ):
                command = (
                    f"kubectl -n {namespace} describe pod {name}  (requests, selectors, volumes)"
                )
                problems.append(
                    Problem(
                        f"pod/{name}", f"unschedulable: {condition.get('message', '')}", command
                    )
                )
    return problems


def pvc_problems(
    pvcs: list[Obj], events: list[Obj], now: datetime, stuck_s: float, namespace: str
) -> list[Problem]:
    """PVCs Pending longer than stuck_s, unless they only wait for their first pod's node."""
    latest: dict[str, Obj] = {}
    for event in sorted(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or ""):
        latest[event["involvedObject"]["name"]] = event
    problems = []
    for pvc in pvcs:
        name = pvc["metadata"]["name"]
        event = latest.get(name, {})
        if (
            pvc.get("status", {}).get("phase") != "Pending"
            or event.get("reason") == "WaitForFirstConsumer"
        ):
            continue
        if _age_s(pvc["metadata"].get("creationTimestamp"), now) > stuck_s:
            why = event.get("message") or "no volume provisioned"
            problems.append(
                Problem(
                    f"persistentvolumeclaim/{name}",
                    f"Pending: {why}",
                    f"kubectl -n {namespace} describe pvc {name}",
                )
            )
    return problems


def _claims(objs: list[Obj]) -> list[tuple[str, str | None]]:
    claims = [
        (o["metadata"]["name"], o["spec"].get("storageClassName"))
        for o in objs
        if o["kind"] == "PersistentVolumeClaim"
    ]
    for obj in (o for o in objs if o["kind"] == "StatefulSet"):
        claims += [
            (t["metadata"]["name"], t["spec"].get("storageClassName"))
            for t in obj["spec"].get("volumeClaimTemplates", [])
        ]
    return claims


def _containers(obj: Obj) -> list[Obj]:
    spec = obj.get("spec", {})
    template: Obj = (
        spec.get("jobTemplate", {}).get("spec", spec).get("template", {}).get("spec", {})
    )
    return [*template.get("initContainers", []), *template.get("containers", [])]


def _age_s(timestamp: str | None, now: datetime) -> float:
    if not timestamp:
        return 0.0
    return (now - datetime.fromisoformat(timestamp.replace("Z", "+00:00"))).total_seconds()


def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
    command = [os.environ.get("KUBECTL", "kubectl"), *args, "--request-timeout=20s"]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def items(*args: str) -> list[Obj]:
    done = kubectl("get", *args, "-o", "json")
    if done.returncode != 0:
        raise SystemExit(f"kubectl get {' '.join(args)} failed: {done.stderr.strip()}")
    found: list[Obj] = json.loads(done.stdout).get("items", [])
    return found


def preflight(rendered: Path, settings: Path, namespace: str, image: str) -> list[Problem]:
    objs = [o for o in yaml.safe_load_all(rendered.read_text()) if o]
    problems = placeholder_problems(objs, settings)
    if problems:
        return problems  # nothing else is worth checking against a half-filled overlay
    context = kubectl("config", "current-context")
    if context.returncode != 0:
        return [
            Problem("context", "kubectl has no current context", "kubectl config use-context NAME")
        ]
    reach = kubectl("get", "namespace", namespace, "--ignore-not-found", "-o", "name")
    if reach.returncode != 0:
        return [
            Problem(
                f"context {context.stdout.strip()}",
                f"cluster unreachable: {reach.stderr.strip()}",
                "kubectl cluster-info",
            )
        ]
    print(f"preflight: context {context.stdout.strip()}, namespace {namespace}")
    required = required_secrets(objs)
    if required and not reach.stdout.strip():
        fix = f"make k8s-namespace OVERLAY=... (creates {namespace}), then apply your Secrets"
        return [
            Problem(f"namespace/{namespace}", "not found, and the Secrets must be in it first", fix)
        ]
    problems = secret_problems(
        required, items("secret", "-n", namespace) if required else [], namespace
    )
    problems += storage_problems(objs, items("storageclass"))
    return problems + image_problems(image)


def image_problems(image: str) -> list[Problem]:
    """Ask the registry for the image where a Docker CLI can (K8S_CHECK_IMAGE=0 skips it)."""
    if os.environ.get("K8S_CHECK_IMAGE", "1") == "0" or shutil.which("docker") is None:
        print(f"preflight: image {image} not checked (no docker CLI, or K8S_CHECK_IMAGE=0)")
        return []
    done = subprocess.run(
        ["docker", "manifest", "inspect", image], capture_output=True, text=True, check=False
    )
    if done.returncode == 0:
        return []
    fix = "make docker-push REGISTRY=... TAG=...  (kind: make kind-load, then K8S_CHECK_IMAGE=0)"
    return [Problem(f"image {image}", f"not found in its registry: {done.stderr.strip()}", fix)]


def stuck(namespace: str) -> list[Problem]:
    now, stuck_s = datetime.now(UTC), float(os.environ.get("K8S_STUCK_S", "90"))
    problems = pod_problems(items("pods", "-n", namespace), now, stuck_s, namespace)
    pvc_events = items(
        "events", "-n", namespace, "--field-selector", "involvedObject.kind=PersistentVolumeClaim"
    )
    return problems + pvc_problems(
        items("pvc", "-n", namespace), pvc_events, now, stuck_s, namespace
    )


def main(argv: list[str]) -> int:
    if argv[:1] == ["preflight"] and len(argv) == 5:
        problems = preflight(Path(argv[1]), Path(argv[2]), argv[3], argv[4])
    elif argv[:1] == ["stuck"] and len(argv) == 2:
        problems = stuck(argv[1])
    else:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
