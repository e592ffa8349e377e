"""The GitHub workflow runs make targets only, and each one exists and is listed by `make help`."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from tests.k8s.manifests import REPO

pytestmark = pytest.mark.k8s

WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
REQUIRED = {"lint", "test", "all", "k8s-validate", "docker-build", "docker-smoke"}


def _run_steps() -> list[str]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    return [s["run"] for job in workflow["jobs"].values() for s in job["steps"] if "run" in s]


def _help_targets() -> set[str]:
    out = subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return set(re.findall(r"^\s+(?:\x1b\[\d+m)?([\w-]+)", out, flags=re.MULTILINE))


def test_every_step_is_one_make_target() -> None:
    steps = _run_steps()
    assert steps
    assert all(re.fullmatch(r"make [\w-]+", s.strip()) for s in steps), steps


def test_ci_runs_the_checks_the_issue_lists_and_make_help_knows_them() -> None:
    targets = {s.split()[1] for s in _run_steps()}
    assert targets >= REQUIRED
    assert targets <= _help_targets()


def test_ci_runs_on_pushes_and_pull_requests_with_pip_caching() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    triggers = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1 reads `on` as True
    assert {"push", "pull_request"} <= set(triggers)
    for job in workflow["jobs"].values():
        (setup,) = [s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python")]
        assert setup["with"]["cache"] == "pip"
