"""The Dockerfile, read as text (no Docker engine here): the properties the issue asks for.

hadolint (`make lint`) checks style and common mistakes; these check our own rules. CI builds the
image and runs it for real (`make docker-build docker-smoke`).
"""

from __future__ import annotations

import json
import re

import pytest

from tests.k8s.manifests import REPO

pytestmark = pytest.mark.k8s

SECRET_LIKE = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|ACCESS_KEY|CREDENTIAL", re.IGNORECASE)


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined, current = [], ""
    for line in (REPO / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        current += stripped.removesuffix("\\").strip() + " "
        if not stripped.endswith("\\"):
            joined.append(current.strip())
            current = ""
    return [(i.split(maxsplit=1)[0].upper(), i.split(maxsplit=1)[1]) for i in joined]


def _final_stage() -> list[tuple[str, str]]:
    instructions = _instructions()
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    return instructions[last_from:]


def _arg_default(name: str) -> str:
    (value,) = [a.split("=", 1)[1] for n, a in _instructions() if n == "ARG" and a.startswith(name)]
    return value


def test_build_is_multi_stage_on_one_slim_python_311_release() -> None:
    base, *stages = [args for name, args in _instructions() if name == "FROM"]
    # A full patch version written out (Dependabot moves it), not a floating python:3.11-slim.
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+ AS python", base)
    assert len(stages) >= 2
    assert all(f.split()[0] == "python" for f in stages)


def test_final_stage_copies_only_runtime_files() -> None:
    copied = {
        args.split()[-2]
        for name, args in _final_stage()
        if name == "COPY" and "--from=" not in args
    }
    assert copied <= {"requirements.txt", "mlops/", "scripts/", "configs/"}
    assert not any("requirements-dev" in args for _, args in _instructions())


def test_torch_is_the_cpu_build_unless_asked_otherwise() -> None:
    assert _arg_default("TORCH_INDEX_URL").endswith("/whl/cpu")


def test_runs_as_a_numeric_non_root_user() -> None:
    (user,) = [args for name, args in _final_stage() if name == "USER"]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0
    assert not gid or gid.isdigit()


def test_entrypoint_and_cmd_are_exec_form() -> None:
    # Shell form would make /bin/sh PID 1, and SIGTERM would never reach the server.
    for instruction in ("ENTRYPOINT", "CMD"):
        (args,) = [a for n, a in _final_stage() if n == instruction]
        assert isinstance(json.loads(args), list), instruction
    cmd = json.loads(next(a for n, a in _final_stage() if n == "CMD"))
    assert cmd[0] == "scripts/serve.py"


def test_healthcheck_asks_for_readiness_on_the_servers_port() -> None:
    (healthcheck,) = [a for n, a in _final_stage() if n == "HEALTHCHECK"]
    assert "/v2/health/ready" in healthcheck
    env = " ".join(a for n, a in _final_stage() if n == "ENV")
    exposed = [a for n, a in _final_stage() if n == "EXPOSE"]
    assert "HOST=0.0.0.0" in env
    assert "PORT=8080" in env
    assert exposed == ["8080"]


def test_writable_locations_point_at_tmp() -> None:
    env = " ".join(a for n, a in _final_stage() if n == "ENV")
    for variable in ("HOME", "XDG_CACHE_HOME", "MPLCONFIGDIR"):
        assert re.search(rf"\b{variable}=/tmp\b", env), variable


def test_no_secret_in_env_or_arg() -> None:
    for name, args in _instructions():
        if name in {"ENV", "ARG"}:
            for word in args.split():
                key = word.split("=", 1)[0]
                assert not SECRET_LIKE.search(key), f"{name} {key}"


def test_image_carries_oci_labels() -> None:
    labels = " ".join(a for n, a in _final_stage() if n == "LABEL")
    for key in ("title", "source", "version", "revision", "created"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_dockerignore_keeps_local_state_out() -> None:
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".mlflow", "mlruns", "mlartifacts", "data", "artifacts"} <= ignored
