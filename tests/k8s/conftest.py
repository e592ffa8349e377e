"""Every way the manifests can be built, rendered once per test session.

"dev" and "prod" are the overlays as they are; the "+..." builds add the optional components, so
that they are checked too (prod already includes retrain-schedule).
"""

from __future__ import annotations

import pytest

from tests.k8s.manifests import K8S, Obj, kustomize, kustomize_with

BUILDS = {
    "dev": ("dev", []),
    "prod": ("prod", []),
    "dev+retrain-schedule+servicemonitor+monitoring": (
        "dev",
        ["retrain-schedule", "servicemonitor", "monitoring"],
    ),
    "prod+servicemonitor+monitoring": ("prod", ["servicemonitor", "monitoring"]),
}


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Obj]]:
    rendered = {}
    for name, (overlay, components) in BUILDS.items():
        if components:
            rendered[name] = kustomize_with(tmp_path_factory.mktemp("build"), overlay, components)
        else:
            rendered[name] = kustomize(K8S / "overlays" / overlay)
    return rendered


@pytest.fixture(params=sorted(BUILDS))
def objs(request: pytest.FixtureRequest, built: dict[str, list[Obj]]) -> list[Obj]:
    """Each build in turn (the test id names it)."""
    return built[request.param]


@pytest.fixture(params=["dev", "prod"])
def overlay_objs(request: pytest.FixtureRequest, built: dict[str, list[Obj]]) -> list[Obj]:
    """The two overlays as they are, without optional components."""
    return built[request.param]
