"""k8s/deploy.sh against a fake kubectl (tests/k8s/fake_kubectl.py): what it refuses before
applying anything, the order it applies in, and how fast it gives up on a stuck pod."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.k8s.manifests import PROD_SETTINGS, REPO, copy_tree, kubectl

pytestmark = pytest.mark.k8s

IMAGE = "registry.example/team/mlops:abc123"


@dataclass(frozen=True)
class Cluster:
    """A copy of k8s/ (its prod settings filled in unless told) and the fake cluster's folder."""

    k8s: Path
    state: Path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "PATH": f"{self.state / 'bin'}:{os.environ['PATH']}",
            "FAKE_CLUSTER": str(self.state),
            "REAL_KUBECTL": kubectl(),
            "PYTHON": sys.executable,
            "K8S_CHECK_IMAGE": "0",
            "K8S_POLL_S": "0.05",
            "K8S_TIMEOUT_S": "20",
        }
        command = [str(self.k8s / "deploy.sh"), *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    def calls(self) -> list[str]:
        log = self.state / "calls.log"
        return log.read_text().splitlines() if log.exists() else []

    def applied(self) -> list[str]:
        return [c.split(" -l ", 1)[1] for c in self.calls() if c.startswith("apply -k")]

    def write(self, name: str, content: str | list[dict[str, object]]) -> None:
        text = content if isinstance(content, str) else json.dumps({"items": content})
        (self.state / name).write_text(text)


def _cluster(tmp_path: Path, settings: dict[str, str] | None) -> Cluster:
    state = tmp_path / "cluster"
    (state / "bin").mkdir(parents=True)
    (state / "bin" / "kubectl").symlink_to(REPO / "tests" / "k8s" / "fake_kubectl.py")
    (state / "context").write_text("kind-test")
    return Cluster(copy_tree(tmp_path / "repo", settings), state)


@pytest.fixture
def prod(tmp_path: Path) -> Cluster:
    return _cluster(tmp_path, PROD_SETTINGS)


@pytest.fixture
def dev(tmp_path: Path) -> Cluster:
    cluster = _cluster(tmp_path, None)
    cluster.write("workloads", "statefulset.apps/postgres\ndeployment.apps/mlflow\n")
    cluster.write("rolled-out", "postgres\nmlflow\nmodel-server\n")
    default = {"storageclass.kubernetes.io/is-default-class": "true"}
    cluster.write("storageclass.json", [{"metadata": {"name": "standard", "annotations": default}}])
    return cluster


def _secret(name: str, **data: str) -> dict[str, object]:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {"metadata": {"name": name}, "data": encoded}


def test_prod_as_committed_is_refused_before_kubectl_is_asked_anything(tmp_path: Path) -> None:
    cluster = _cluster(tmp_path, None)
    result = cluster.run("apply", "prod", IMAGE)
    assert result.returncode == 1
    assert "setting DATABASE_CIDR: still holds the placeholder" in result.stderr
    assert "next: edit " in result.stderr and "settings.env:" in result.stderr
    assert "nothing was applied" in result.stderr
    assert [c for c in cluster.calls() if not c.startswith("kustomize")] == []


def test_a_missing_namespace_says_to_create_it_first(prod: Cluster) -> None:
    result = prod.run("apply", "prod", IMAGE)
    assert result.returncode == 1
    assert "namespace/mlops: not found" in result.stderr
    assert "make k8s-namespace" in result.stderr
    assert prod.applied() == []


def test_missing_secrets_keys_and_placeholders_are_named_with_the_fix(prod: Cluster) -> None:
    prod.write("namespace", "")
    prod.write(
        "secret.json",
        [
            _secret("mlflow-server", **{"backend-store-uri": "postgresql+psycopg://x"}),
            _secret(
                "mlflow-admin",
                MLFLOW_TRACKING_USERNAME="admin",
                MLFLOW_TRACKING_PASSWORD="CHANGE-ME",
            ),
        ],
    )
    prod.write("storageclass.json", [{"metadata": {"name": "standard"}}])
    result = prod.run("apply", "prod", IMAGE)
    assert result.returncode == 1
    assert "secret/mlflow-pipeline: not found in namespace mlops" in result.stderr
    assert "next: kubectl apply -f my-secrets.yaml" in result.stderr
    assert "secret/mlflow-server: has no key flask-secret-key" in result.stderr
    assert (
        "secret/mlflow-admin: key MLFLOW_TRACKING_PASSWORD still holds CHANGE-ME" in result.stderr
    )
    assert (
        "persistentvolumeclaim/pipeline-data: storage class efs-sc does not exist" in result.stderr
    )
    assert prod.applied() == []


def test_dev_applies_setup_before_the_tracking_server_then_the_pipeline(dev: Cluster) -> None:
    for step in ("mlflow-setup", "prepare", "train", "promote"):
        dev.write(f"job-{step}", "Complete ")
    result = dev.run("apply", "dev", IMAGE)
    assert result.returncode == 0, result.stderr
    assert dev.applied() == [
        "!mlops/step,!mlops/after",
        "mlops/step=mlflow-setup",
        "mlops/after=mlflow-setup",
        "mlops/step=prepare",
        "mlops/step=train",
        "mlops/step=promote",
    ]


def test_tune_is_followed_by_one_registration_and_promote(dev: Cluster) -> None:
    for step in ("tune", "tune-register", "promote"):
        dev.write(f"job-{step}", "Complete ")
    result = dev.run("job", "dev", IMAGE, "tune")
    assert result.returncode == 0, result.stderr
    assert dev.applied() == ["mlops/step=tune", "mlops/step=tune-register", "mlops/step=promote"]


def test_a_pod_that_cannot_pull_its_image_stops_the_wait_at_once(dev: Cluster) -> None:
    waiting = {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "x:1"'}
    pod = {
        "metadata": {"name": "prepare-abcde"},
        "status": {"containerStatuses": [{"name": "prepare", "state": {"waiting": waiting}}]},
    }
    dev.write("job-mlflow-setup", "Complete ")
    dev.write("pods.json", [pod])
    started = time.monotonic()
    result = dev.run("apply", "dev", IMAGE)
    assert result.returncode == 1
    assert time.monotonic() - started < 15, "not waiting out K8S_TIMEOUT_S"
    assert "pod/prepare-abcde: ImagePullBackOff: Back-off pulling image" in result.stderr
    assert "next: kubectl -n mlops-dev describe pod prepare-abcde" in result.stderr


def test_a_failed_job_prints_its_logs_and_fails(dev: Cluster) -> None:
    dev.write("job-mlflow-setup", "Failed ")
    result = dev.run("apply", "dev", IMAGE)
    assert result.returncode == 1
    assert "job/mlflow-setup failed" in result.stderr
    assert "logs job/mlflow-setup -n mlops-dev --all-containers --tail=50" in dev.calls()


def test_the_namespace_command_applies_the_namespace_only(prod: Cluster) -> None:
    assert prod.run("namespace", "prod", IMAGE).returncode == 0
    assert prod.applied() == ["pod-security.kubernetes.io/enforce"]
