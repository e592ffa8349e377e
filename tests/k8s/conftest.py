"""Every way the manifests can be built, rendered once per test session.

"dev" is the overlay as it is, "prod" the overlay with its settings.env filled in as an operator
would (PROD_SETTINGS; as committed, every value is a placeholder that k8s/deploy.sh refuses);
the "+..." builds add the optional components, so that they are checked too (prod already
includes retrain-schedule and backup; batch-score is added to prod, where it reaches S3 outside).
"""

from __future__ import annotations

import pytest

from tests.k8s.manifests import K8S, PROD_SETTINGS, Obj, kustomize, kustomize_with

BUILDS = {
    "dev": ("dev", []),
    "prod": ("prod", []),
    "dev+retrain-schedule+backup+servicemonitor+monitoring": (
        "dev",
        ["retrain-schedule", "backup", "servicemonitor", "monitoring"],
    ),
    "prod+servicemonitor+monitoring": ("prod", ["servicemonitor", "monitoring"]),
    "prod+batch-score": ("prod", ["batch-score"]),
}


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Obj]]:
    rendered = {}
    for name, (overlay, components) in BUILDS.items():
        if overlay == "dev" and not components:
            rendered[name] = kustomize(K8S / "overlays" / overlay)
        else:
            settings = PROD_SETTINGS if overlay == "prod" else None
            tmp = tmp_path_factory.mktemp("build")
            rendered[name] = kustomize_with(tmp, overlay, components, settings)
    return rendered


@pytest.fixture(params=sorted(BUILDS))
def objs(request: pytest.FixtureRequest, built: dict[str, list[Obj]]) -> list[Obj]:
    """Each build in turn (the test id names it)."""
    return built[request.param]


@pytest.fixture(params=["dev", "prod"])
def overlay_objs(request: pytest.FixtureRequest, built: dict[str, list[Obj]]) -> list[Obj]:
    """The two overlays as they are, without optional components."""
    return built[request.param]
