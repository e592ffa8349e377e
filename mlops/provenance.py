"""Where a model came from: the git commit of the code that trained it."""

from __future__ import annotations

import os
import subprocess


def git_commit() -> str:
    """HEAD's commit (with "-dirty" when the tree has changes); `GIT_COMMIT` in images."""
    if os.environ.get("GIT_COMMIT"):
        return os.environ["GIT_COMMIT"]
    try:
        head = _git("rev-parse", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


def _git(*args: str) -> str:
    result = subprocess.run(["git", *args], capture_output=True, text=True, check=True, timeout=10)
    return result.stdout.strip()
