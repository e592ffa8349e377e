"""The GitHub workflows run make targets only, each one exists and is listed by `make help`; only
the release workflow, on version tags, publishes; every action is pinned by commit."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from tests.k8s.manifests import REPO

pytestmark = pytest.mark.k8s

WORKFLOWS = REPO / ".github" / "workflows"
CI, RELEASE = WORKFLOWS / "ci.yml", WORKFLOWS / "release.yml"
REQUIRED = {
    "lint",
    "test",
    "all",
    "k8s-validate",
    "docker-build",
    "docker-smoke",
    "audit",
    "kind-load",
    "k8s-deploy",
    "k8s-smoke",
}


def _workflow(path: object) -> dict[str, object]:
    loaded: dict[str, object] = yaml.safe_load(REPO.joinpath(str(path)).read_text())
    return loaded


def _steps(path: object) -> list[dict[str, str]]:
    jobs = _workflow(path)["jobs"]
    assert isinstance(jobs, dict)
    return [step for job in jobs.values() for step in job["steps"]]


def _run_steps(path: object) -> list[str]:
    return [s["run"] for s in _steps(path) if "run" in s]


def _triggers(path: object) -> dict[str, object]:
    workflow = _workflow(path)
    triggers = workflow.get(True, workflow.get("on"))  # YAML 1.1 reads `on` as True
    assert isinstance(triggers, dict)
    return triggers


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


@pytest.mark.parametrize("workflow", [CI, RELEASE], ids=["ci", "release"])
def test_every_step_is_one_make_target(workflow: object) -> None:
    steps = _run_steps(workflow)
    assert steps
    assert all(re.fullmatch(r"make [\w-]+", s.strip()) for s in steps), steps


def test_ci_runs_the_checks_the_issue_lists_and_make_help_knows_them() -> None:
    targets = {s.split()[1] for s in _run_steps(CI)}
    assert targets >= REQUIRED
    assert targets | {s.split()[1] for s in _run_steps(RELEASE)} <= _help_targets()


def test_ci_runs_on_pushes_and_pull_requests_with_pip_caching() -> None:
    assert {"push", "pull_request"} <= set(_triggers(CI))
    jobs = _workflow(CI)["jobs"]
    assert isinstance(jobs, dict)
    for job in jobs.values():
        (setup,) = [s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python")]
        assert setup["with"]["cache"] == "pip"


def test_only_the_release_workflow_pushes_and_only_on_version_tags() -> None:
    assert "make docker-push" not in _run_steps(CI)
    assert "make docker-push" in _run_steps(RELEASE)
    assert set(_triggers(RELEASE)) == {"push"}
    assert _triggers(RELEASE)["push"] == {"tags": ["v*"]}
    setups = [s for s in _steps(RELEASE) if s.get("uses", "").startswith("actions/setup-python")]
    assert setups and all("cache" not in s.get("with", {}) for s in setups), "no cache in a release"
    scans = [s for s in _steps(RELEASE) if s.get("uses", "").startswith("aquasecurity/trivy")]
    assert scans and scans[0]["with"]["exit-code"] == "1"


def test_every_action_is_pinned_by_commit_with_its_version_beside_it() -> None:
    for path in (CI, RELEASE):
        uses = re.findall(r"uses: (\S+)(.*)", path.read_text())
        assert uses
        for action, comment in uses:
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", action), action
            assert re.fullmatch(r" # v\d+\.\d+\.\d+", comment), (action, comment)
