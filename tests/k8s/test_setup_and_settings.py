"""What a first deploy needs from the manifests: migrations once, least-privilege MLflow users,
prod's settings in one file, backups in the format `make restore` reads."""

from __future__ import annotations

import ast
import json
import re

import pytest

from mlops.backup import SUFFIXES
from tests.k8s.manifests import (
    K8S,
    PROD_SETTINGS,
    Obj,
    container,
    containers,
    env_of,
    find,
    pod_of,
    pod_templates,
)

pytestmark = pytest.mark.k8s

SETUP = K8S / "base" / "mlflow_setup.py"


def _secret_refs(c: Obj) -> set[str]:
    """Names of the Secrets a container reads, without dev's generated hash suffix."""
    names = {s["secretRef"]["name"] for s in c.get("envFrom", []) if "secretRef" in s}
    names |= {
        v["valueFrom"]["secretKeyRef"]["name"]
        for v in c.get("env", [])
        if "secretKeyRef" in v.get("valueFrom", {})
    }
    return {re.sub(r"-[a-z0-9]{10}$", "", name) for name in names}


def test_the_setup_job_runs_its_script_in_the_servers_mlflow_image(overlay_objs: list[Obj]) -> None:
    setup = container(pod_of(overlay_objs, "Job/mlflow-setup"), "setup")
    server = container(pod_of(overlay_objs, "Deployment/mlflow"), "mlflow")
    assert setup["image"] == server["image"]
    assert setup["command"] == ["python", "/setup/mlflow_setup.py"]
    (config_map,) = [o for o in overlay_objs if o["metadata"]["name"].startswith("mlflow-setup-")]
    assert config_map["data"]["mlflow_setup.py"] == SETUP.read_text()


def test_the_tracking_server_starts_after_the_setup_job(overlay_objs: list[Obj]) -> None:
    # k8s/deploy.sh applies objects labelled mlops/after=<step> once that step's Job completed.
    server = find(overlay_objs, "Deployment", "mlflow")
    job = find(overlay_objs, "Job", "mlflow-setup")
    assert server["metadata"]["labels"]["mlops/after"] == job["metadata"]["labels"]["mlops/step"]
    assert "MLFLOW_BACKEND_STORE_URI" in env_of(
        container(pod_of(overlay_objs, "Job/mlflow-setup"), "setup"), overlay_objs
    )


def test_the_setup_job_creates_the_users_the_clients_log_in_as(overlay_objs: list[Obj]) -> None:
    users = ast.literal_eval(re.search(r"USERS = (\{.*?\n\})", SETUP.read_text(), re.S).group(1))
    setup = container(pod_of(overlay_objs, "Job/mlflow-setup"), "setup")
    by_prefix = {
        var["name"].rsplit("_", 1)[0]: re.sub(
            r"-[a-z0-9]{10}$", "", var["valueFrom"]["secretKeyRef"]["name"]
        )
        for var in setup["env"]
        if var["name"].endswith(("_USERNAME", "_PASSWORD"))
    }
    assert set(by_prefix) == set(users)
    assert by_prefix == {
        "MLFLOW_AUTH_ADMIN": "mlflow-admin",
        "PIPELINE": "mlflow-pipeline",
        "MODEL_SERVER": "mlflow-model-server",
    }
    assert users["PIPELINE"][1] == "EDIT" and users["MODEL_SERVER"][1] == "READ"


def test_clients_log_in_as_their_least_privilege_user(objs: list[Obj]) -> None:
    for pod in pod_templates(objs):
        for c in containers(pod.spec):
            if "MLFLOW_TRACKING_URI" not in env_of(c, objs):
                continue
            readers = {"Deployment/model-server", "Job/batch-score"}  # they only load models
            expected = "mlflow-model-server" if pod.owner in readers else "mlflow-pipeline"
            assert expected in _secret_refs(c), (pod.owner, c["name"])
            assert "mlflow-admin" not in _secret_refs(c), (pod.owner, c["name"])


def test_every_prod_setting_is_one_line_of_settings_env_and_reaches_the_manifests(
    built: dict[str, list[Obj]],
) -> None:
    lines = (K8S / "overlays/prod/settings.env").read_text().splitlines()
    committed = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert set(committed) == set(PROD_SETTINGS)
    defaults = {"OBJECT_STORE_PORT", "BACKUP_RETENTION_DAYS"}
    assert all("CHANGE-ME" in v for k, v in committed.items() if k not in defaults)
    rendered = json.dumps(built["prod"])
    for key, value in PROD_SETTINGS.items():
        assert value in rendered, key
    assert "CHANGE-ME" not in json.dumps([o for o in built["prod"] if o["kind"] != "Secret"])


def test_the_prod_volume_names_its_storage_class_and_the_tracking_server_its_identity(
    built: dict[str, list[Obj]],
) -> None:
    claim = find(built["prod"], "PersistentVolumeClaim", "pipeline-data")
    assert claim["spec"]["storageClassName"] == PROD_SETTINGS["STORAGE_CLASS"]
    annotations = find(built["prod"], "ServiceAccount", "mlflow")["metadata"]["annotations"]
    assert annotations["eks.amazonaws.com/role-arn"] == PROD_SETTINGS["OBJECT_STORE_IDENTITY"]
    for account in ("pipeline", "model-server"):
        pulls = find(built["prod"], "ServiceAccount", account)["imagePullSecrets"]
        assert pulls == [{"name": "registry-credentials"}]


def test_the_backup_cronjob_writes_what_make_restore_reads(built: dict[str, list[Obj]]) -> None:
    objs = built["prod"]
    pod = pod_of(objs, "CronJob/backup")
    assert find(objs, "CronJob", "backup")["spec"]["concurrencyPolicy"] == "Forbid"
    dump = container(pod, "dump")
    manifest = json.loads(re.search(r"'(\{\"format\".*\})'", dump["args"][0]).group(1))
    assert manifest["format"] == 1
    for name, part in manifest["parts"].items():
        assert part == {"kind": "postgresql", "file": f"{name}{SUFFIXES['postgresql']}"}
    sources = {v["name"]: v["valueFrom"]["secretKeyRef"] for v in dump["env"]}
    assert sources["MLFLOW_DATABASE"] == {"name": "mlflow-server", "key": "backend-store-uri"}
    assert sources["OPTUNA_DATABASE"] == {"name": "optuna-storage", "key": "uri"}
    upload = container(pod, "upload")
    compile(upload["args"][0], "upload", "exec")
    env = env_of(upload, objs)
    assert env["BACKUP_DESTINATION"] == PROD_SETTINGS["BACKUP_DESTINATION"]
    assert env["MLFLOW_S3_ENDPOINT_URL"] == PROD_SETTINGS["S3_ENDPOINT_URL"]
    assert pod.labels["mlops/db-client"] == pod.labels["mlops/object-store-client"] == "true"
