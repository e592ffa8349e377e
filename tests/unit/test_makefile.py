"""The Makefile's pipeline stamps: each step reruns for its own code, and only for it.

`make -n` runs in a copy of the repository whose stamps are all up to date, so the steps it would
run are exactly those a changed file makes stale.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlops.tracking import EMBEDDED_STORE_DIR

REPO = Path(__file__).resolve().parents[2]
STEPS = ("prepare", "train", "tune", "promote")

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")


# Where the pipeline points by default: no tracking server named, no ARGS.
LOCAL = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}


def make_variable(name: str, cwd: Path = REPO, env: dict[str, str] = LOCAL) -> list[str]:
    printed = subprocess.run(
        ["make", "-s", "--no-print-directory", "--eval", "print-%: ; @echo $($*)", f"print-{name}"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return printed.stdout.split()


def imported_modules(path: Path) -> set[Path]:
    """The files of `mlops` modules `path` imports, directly or through each other."""
    seen: set[Path] = set()
    todo = [path]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(_direct_imports(current))
    return seen


def _direct_imports(path: Path) -> set[Path]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    files = set()
    for name in (n for n in names if n.split(".")[0] == "mlops"):
        parts = name.split(".")
        # `from mlops.a import b`: b may be a module or a name; every package on the way counts.
        for depth in range(1, len(parts) + 1):
            base = REPO.joinpath(*parts[:depth])
            for candidate in (base.with_suffix(".py"), base / "__init__.py"):
                if candidate.is_file():
                    files.add(candidate)
    return files


@needs_make
@pytest.mark.parametrize("step", STEPS)
def test_each_step_lists_every_module_its_script_imports(step: str) -> None:
    # A step's list leaves out what the steps before it hold (their stamps carry those changes).
    upto = STEPS[: STEPS.index(step) + 1]
    listed = {REPO / path for s in upto for path in make_variable(f"{s.upper()}_SOURCES")}
    missing = imported_modules(REPO / "scripts" / f"{step}.py") - listed
    assert sorted(str(path.relative_to(REPO)) for path in missing) == []


@needs_make
def test_no_step_lists_the_server() -> None:
    for step in STEPS:
        assert not [p for p in make_variable(f"{step.upper()}_SOURCES") if "serving" in p]


@needs_make
def test_store_folder_is_the_one_mlops_tracking_names() -> None:
    assert make_variable("STORE") == [str(EMBEDDED_STORE_DIR)]


@pytest.fixture
def up_to_date(tmp_path: Path) -> Path:
    """A copy of the pipeline's inputs whose venv and stamps are all newer than every source."""
    for folder in ("mlops", "scripts", "configs"):
        shutil.copytree(REPO / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__py*"))
    for name in ("Makefile", "requirements.txt", "requirements-dev.txt"):
        shutil.copy2(REPO / name, tmp_path / name)
    for path in tmp_path.rglob("*"):
        os.utime(path, (1_000, 1_000))
    (tmp_path / ".venv").mkdir()
    _create(tmp_path / ".venv/.installed", 2_000)
    (stamps,) = make_variable("STAMPS", cwd=tmp_path)
    for order, step in enumerate(STEPS):
        _create(tmp_path / stamps / step, 3_000 + order)
    return tmp_path


def _create(path: Path, mtime: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    os.utime(path, (mtime, mtime))


def steps_rerun_after_touching(repo: Path, changed: str) -> list[str]:
    os.utime(repo / changed, (5_000, 5_000))
    return planned_steps(repo, LOCAL)


def planned_steps(repo: Path, env: dict[str, str], *args: str) -> list[str]:
    plan = subprocess.run(
        ["make", "-n", "all", f"PYTHON={sys.executable}", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [step for step in STEPS if f"scripts/{step}.py --config" in plan]


@needs_make
@pytest.mark.parametrize(
    ("changed", "rerun"),
    [
        ("mlops/serving/app.py", []),
        ("mlops/serving/model.py", []),
        ("mlops/train.py", ["train", "tune", "promote"]),
        ("mlops/tuning/objective.py", ["tune", "promote"]),
        ("mlops/gates.py", ["promote"]),
        ("mlops/validation.py", STEPS),
        ("configs/default.yaml", STEPS),
    ],
)
def test_a_change_reruns_its_step_and_those_after_it(
    up_to_date: Path, changed: str, rerun: list[str]
) -> None:
    assert steps_rerun_after_touching(up_to_date, changed) == list(rerun)


@needs_make
def test_nothing_reruns_where_the_pipeline_points_as_before(up_to_date: Path) -> None:
    assert planned_steps(up_to_date, LOCAL) == []


@needs_make
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000"),
        ("MLFLOW_REGISTRY_URI", "http://registry.internal:5000"),
        ("ARGS", "--set data.source=s3://bucket/new/"),
    ],
)
def test_pointing_elsewhere_reruns_every_step(up_to_date: Path, variable: str, value: str) -> None:
    if variable == "ARGS":
        assert planned_steps(up_to_date, LOCAL, f"ARGS={value}") == list(STEPS)
    else:
        assert planned_steps(up_to_date, {**LOCAL, variable: value}) == list(STEPS)


@needs_make
def test_all_says_which_steps_it_skips(up_to_date: Path) -> None:
    done = subprocess.run(
        ["make", "all", f"PYTHON={sys.executable}"],
        cwd=up_to_date,
        env=LOCAL,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert [line.split(":")[0] for line in done.splitlines() if "skipped" in line] == list(STEPS)
