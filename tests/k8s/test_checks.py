"""k8s/checks.py's decisions, on the objects kubectl would return: what stops a deploy, what not."""

from __future__ import annotations

import base64
import importlib.util
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest

from tests.k8s.manifests import K8S, Obj

pytestmark = pytest.mark.k8s

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("checks", K8S / "checks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["checks"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


checks = _load()


def _ago(seconds: float) -> str:
    return (NOW - timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def _pod(**status: object) -> Obj:
    return {"metadata": {"name": "p"}, "status": status}


def _waiting(reason: str) -> Obj:
    state = {"waiting": {"reason": reason, "message": "why"}}
    return _pod(containerStatuses=[{"name": "c", "state": state}])


@pytest.mark.parametrize(
    ("reason", "next_command"),
    [
        ("ImagePullBackOff", "kubectl -n ns describe pod p"),
        ("CrashLoopBackOff", "kubectl -n ns logs p -c c --previous"),
        ("CreateContainerConfigError", "kubectl -n ns describe pod p"),
    ],
)
def test_a_pod_that_cannot_recover_is_reported_with_the_next_command(
    reason: str, next_command: str
) -> None:
    (problem,) = checks.pod_problems([_waiting(reason)], NOW, 90, "ns")
    assert problem.obj == "pod/p"
    assert problem.reason.startswith(reason)
    assert problem.next.startswith(next_command)


@pytest.mark.parametrize("reason", ["ErrImagePull", "ContainerCreating", "PodInitializing"])
def test_a_pod_on_its_way_is_left_to_get_there(reason: str) -> None:
    assert checks.pod_problems([_waiting(reason), _pod(phase="Running")], NOW, 90, "ns") == []


def test_an_unschedulable_pod_is_reported_once_it_stayed_so() -> None:
    def unschedulable(since_s: float) -> Obj:
        condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}
        condition |= {"message": "0/3 nodes: Insufficient cpu", "lastTransitionTime": _ago(since_s)}
        return _pod(conditions=[condition])

    assert checks.pod_problems([unschedulable(30)], NOW, 90, "ns") == []
    (problem,) = checks.pod_problems([unschedulable(100)], NOW, 90, "ns")
    assert "Insufficient cpu" in problem.reason


def test_a_pending_claim_is_reported_unless_it_waits_for_its_first_pod() -> None:
    def claim(name: str, age_s: float, phase: str = "Pending") -> Obj:
        meta = {"name": name, "creationTimestamp": _ago(age_s)}
        return {"metadata": meta, "status": {"phase": phase}}

    def event(name: str, reason: str) -> Obj:
        return {"involvedObject": {"name": name}, "reason": reason, "message": f"{reason}!"}

    claims = [
        claim("old", 300),
        claim("young", 10),
        claim("bound", 300, "Bound"),
        claim("wait", 300),
    ]
    events = [event("old", "ProvisioningFailed"), event("wait", "WaitForFirstConsumer")]
    (problem,) = checks.pvc_problems(claims, events, NOW, 90, "ns")
    assert problem.obj == "persistentvolumeclaim/old"
    assert problem.reason == "Pending: ProvisioningFailed!"
    assert problem.next == "kubectl -n ns describe pvc old"


def test_required_secrets_leave_out_optional_keys_and_generated_secrets() -> None:
    env = [
        {"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "a"}}},
        {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "b", "optional": True}}},
        {"name": "G", "valueFrom": {"secretKeyRef": {"name": "generated", "key": "g"}}},
    ]
    container = {"env": env, "envFrom": [{"secretRef": {"name": "whole"}}]}
    job = {"kind": "CronJob", "metadata": {"name": "j"}}
    job["spec"] = {"jobTemplate": {"spec": {"template": {"spec": {"containers": [container]}}}}}
    generated = {"kind": "Secret", "metadata": {"name": "generated"}}
    assert checks.required_secrets([job, generated]) == {"s": {"a"}, "whole": set()}


def test_secrets_are_checked_key_by_key_and_for_placeholders() -> None:
    def secret(name: str, **data: str) -> Obj:
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        return {"metadata": {"name": name}, "data": encoded}

    required = {"s": {"a", "b", "c"}, "missing": set()}
    found = [secret("s", a="real", b="CHANGE-ME")]
    problems = [f"{p.obj}: {p.reason}" for p in checks.secret_problems(required, found, "ns")]
    assert problems == [
        "secret/missing: not found in namespace ns",
        "secret/s: key b still holds CHANGE-ME",
        "secret/s: has no key c",
    ]


def test_claims_need_an_existing_or_a_default_storage_class() -> None:
    claims = [
        {"kind": "PersistentVolumeClaim", "metadata": {"name": "named"}},
        {"kind": "PersistentVolumeClaim", "metadata": {"name": "x"}, "spec": {}},
    ]
    claims[0]["spec"] = {"storageClassName": "efs"}
    default = {"storageclass.kubernetes.io/is-default-class": "true"}
    assert (
        checks.storage_problems(claims, [{"metadata": {"name": "efs", "annotations": default}}])
        == []
    )
    reasons = [p.reason for p in checks.storage_problems(claims, [{"metadata": {"name": "gp3"}}])]
    assert reasons == [
        "storage class efs does not exist",
        "names no storage class and the cluster has no default",
    ]


def test_placeholders_are_named_by_setting_and_line(tmp_path: Path) -> None:
    settings = tmp_path / "settings.env"
    settings.write_text("# CHANGE-ME in a comment is fine\nA=ok\nB=s3://CHANGE-ME-bucket\n")
    (problem,) = checks.placeholder_problems([], settings)
    assert (problem.obj, problem.next) == ("setting B", f"edit {settings}:3")
    leftover = {"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "CHANGE-ME"}}
    secret = {"kind": "Secret", "metadata": {"name": "dev"}, "data": {"k": "CHANGE-ME"}}
    assert [p.obj for p in checks.placeholder_problems([leftover, secret], None)] == ["configmap/c"]
