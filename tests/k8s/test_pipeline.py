"""The pipeline's Jobs: the steps, their shared volume, tuning workers, and promote's exit codes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.k8s.manifests import (
    Obj,
    Pod,
    container,
    containers,
    env_of,
    find,
    pod_of,
    pod_templates,
)

pytestmark = pytest.mark.k8s

STEPS = ("prepare", "train", "promote", "tune")


def _step_container(objs: list[Obj], step: str) -> tuple[Pod, Obj]:
    (pod,) = [p for p in pod_templates(objs) if p.owner == f"Job/{step}"]
    return pod, container(pod, step)


def _mounts(c: Obj) -> dict[str, Obj]:
    return {m["mountPath"]: m for m in c.get("volumeMounts", [])}


def test_each_step_is_a_job_running_its_script(overlay_objs: list[Obj]) -> None:
    for step in STEPS:
        job = find(overlay_objs, "Job", step)
        assert job["metadata"]["labels"]["mlops/step"] == step, "k8s/deploy.sh selects by it"
        _, c = _step_container(overlay_objs, step)
        assert f"scripts/{step}.py" in " ".join(c.get("command", []) + c.get("args", []))


def test_prepare_writes_and_the_others_read_the_shared_volume(overlay_objs: list[Obj]) -> None:
    claims = set()
    for step in STEPS:
        pod, c = _step_container(overlay_objs, step)
        mount = _mounts(c)["/app/data"]
        assert mount.get("readOnly", False) is (step != "prepare"), step
        (volume,) = [v for v in pod.spec["volumes"] if v["name"] == mount["name"]]
        claims.add(volume["persistentVolumeClaim"]["claimName"])
    assert len(claims) == 1


def test_tuning_workers_share_one_study_in_postgresql(overlay_objs: list[Obj]) -> None:
    spec = find(overlay_objs, "Job", "tune")["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["parallelism"] == spec["completions"] >= 2
    _, c = _step_container(overlay_objs, "tune")
    storage = c["env"][[v["name"] for v in c["env"]].index("OPTUNA_STORAGE")]
    assert "secretKeyRef" in storage["valueFrom"]
    value = env_of(c, overlay_objs)["OPTUNA_STORAGE"]
    assert value.startswith(("postgresql+", "<from secret"))
    assert "--trials" not in c["args"], "tune.trials is a total over all workers, not per pod"


def test_prod_volume_can_be_read_by_workers_on_several_nodes(built: dict[str, list[Obj]]) -> None:
    claim = find(built["prod"], "PersistentVolumeClaim", "pipeline-data")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_retraining_runs_every_step_in_order_in_one_pod(built: dict[str, list[Obj]]) -> None:
    cron = find(built["prod"], "CronJob", "retrain")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    spec = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    init_order = [c["name"] for c in spec["initContainers"]]
    assert init_order == ["prepare", "train", "tune"]
    assert [c["name"] for c in spec["containers"]] == ["promote"]


def test_retraining_reads_the_data_source_from_its_config_map(built: dict[str, list[Obj]]) -> None:
    objs = built["prod"]
    pod = pod_of(objs, "CronJob/retrain")
    assert pod.labels["mlops/object-store-client"] == "true", "it reads the object store"
    for c in containers(pod.spec):
        words = " ".join(c.get("args", [])).replace('"', "").split()
        assert "data.source=$(DATA_SOURCE)" in words or "data.source=$DATA_SOURCE" in words
        env = env_of(c, objs)
        assert env["DATA_SOURCE"].startswith("s3://"), c["name"]
        assert env["AWS_REGION"]
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            (var,) = [v for v in c["env"] if v["name"] == key]
            assert "secretKeyRef" in var["valueFrom"], (c["name"], key)


def test_retraining_tunes_a_small_budget_on_a_local_study(built: dict[str, list[Obj]]) -> None:
    tune = container(pod_of(built["prod"], "CronJob/retrain"), "tune")
    args = tune["args"]
    assert int(args[args.index("--trials") + 1]) <= 10
    assert float(args[args.index("--timeout") + 1]) <= 3600
    assert "tune.storage=sqlite:////tmp/optuna.db" in args
    assert "OPTUNA_STORAGE" not in env_of(tune, built["prod"]), "it would override the local one"


def _promote_wrappers(objs: list[Obj]) -> list[str]:
    return [
        c["args"][0]
        for p in pod_templates(objs)
        for c in containers(p.spec)
        if c.get("command") == ["/bin/sh", "-c"] and "scripts/promote.py" in c["args"][0]
    ]


def _fake_python(tmp_path: Path, body: str) -> dict[str, str]:
    """A `python` on PATH that runs `body` (sh) instead of the promote script."""
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\n{body}\n")
    fake.chmod(0o755)
    return {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}


def test_every_promote_container_uses_the_wrapper(overlay_objs: list[Obj]) -> None:
    promote_containers = [
        c
        for p in pod_templates(overlay_objs)
        for c in containers(p.spec)
        if "scripts/promote.py" in " ".join(c.get("command", []) + c.get("args", []))
    ]
    assert len(promote_containers) == len(_promote_wrappers(overlay_objs)) >= 1


@pytest.mark.parametrize(("exit_code", "job_exit_code"), [(0, 0), (3, 0), (1, 1), (2, 2)])
def test_promote_wrapper_maps_not_promoted_to_success(
    built: dict[str, list[Obj]], tmp_path: Path, exit_code: int, job_exit_code: int
) -> None:
    env = _fake_python(tmp_path, f"exit {exit_code}")
    wrappers = _promote_wrappers(built["prod"])  # the Job's and the CronJob's
    assert len(wrappers) == 2
    for script in wrappers:
        result = subprocess.run(
            ["/bin/sh", "-c", script], env=env, cwd=tmp_path, capture_output=True, timeout=30
        )
        assert result.returncode == job_exit_code


def test_promote_wrapper_passes_sigterm_to_the_script(
    built: dict[str, list[Obj]], tmp_path: Path
) -> None:
    # "started" a little after python starts, so that the wrapper has reached `wait` (a SIGTERM
    # in the microseconds before `pid=$!` would not be forwarded; the kubelet's SIGKILL follows).
    env = _fake_python(
        tmp_path,
        "trap 'echo term > got-term; kill $child; exit 7' TERM\n"
        "sleep 0.3; echo started > started; sleep 30 & child=$!; wait $child",
    )
    (script, *_) = _promote_wrappers(built["prod"])
    wrapper = subprocess.Popen(["/bin/sh", "-c", script], env=env, cwd=tmp_path)
    deadline = time.monotonic() + 10
    while not (tmp_path / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    wrapper.send_signal(signal.SIGTERM)
    try:
        assert wrapper.wait(timeout=10) == 7, "the script's own exit code after SIGTERM"
    finally:
        wrapper.kill()
        wrapper.wait()
    assert (tmp_path / "got-term").exists()


def test_tuning_workers_run_trials_and_one_pod_registers_the_best(overlay_objs: list[Obj]) -> None:
    _, worker = _step_container(overlay_objs, "tune")
    assert "--no-register" in worker["args"], "N workers would each register the best trial"
    register_job = find(overlay_objs, "Job", "tune-register")
    assert register_job["spec"].get("parallelism", 1) == 1
    assert register_job["spec"].get("completions", 1) == 1
    pod, register = _step_container(overlay_objs, "tune-register")
    assert register["args"][:3] == worker["args"][:3]
    assert register["args"][3:] == ["--workers", "1"]
    storage = {v["name"]: v.get("valueFrom") for v in register["env"]}["OPTUNA_STORAGE"]
    assert storage == {v["name"]: v.get("valueFrom") for v in worker["env"]}["OPTUNA_STORAGE"]
    assert _mounts(register)["/app/data"]["readOnly"] is True
    assert pod.labels["mlops/db-client"] == "true"
