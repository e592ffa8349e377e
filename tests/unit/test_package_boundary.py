"""The package is production code: it never imports benchmarks/, and the image never holds them."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_package_and_scripts_never_import_benchmarks() -> None:
    # scripts/ ships in the image beside mlops/, so it is held to the same line.
    sources = [*(REPO / "mlops").rglob("*.py"), *(REPO / "scripts").rglob("*.py")]
    offenders = {
        str(path.relative_to(REPO)): sorted(
            name for name in _imported_modules(path) if name.split(".")[0] == "benchmarks"
        )
        for path in sorted(sources)
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_dockerfile_copies_no_benchmarks() -> None:
    copies = [
        line
        for line in (REPO / "Dockerfile").read_text().splitlines()
        if line.strip().upper().startswith(("COPY", "ADD"))
    ]
    assert copies, "expected COPY lines in the Dockerfile"
    assert not [line for line in copies if "benchmarks" in line or line.split()[1] == "."]


def test_docker_context_leaves_out_benchmarks() -> None:
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert "benchmarks" in ignored
