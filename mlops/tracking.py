"""Where MLflow records runs and models: the environment's server, or the embedded local store;
and the git commit every run and model records.

With `MLFLOW_TRACKING_URI` unset, runs go to a SQLite database and a local artifact folder under
`.mlflow/` in the repository (git-ignored), so the pipeline works offline on a fresh clone.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import mlflow

from mlops.config import EMBEDDED_STORE_DIR

# MLflow's HTTP client defaults (7 retries, backoff factor 2, 120 s timeout) let a step hang for
# many minutes on a dead or stuck tracking server. These bound one call to about 35 s; each can be
# overridden in the environment (names from mlflow.environment_variables).
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


def configure_tracking() -> str:
    """Point MLflow at the environment's tracking URI or the embedded store; return the URI."""
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        EMBEDDED_STORE_DIR.mkdir(exist_ok=True)
        uri = f"sqlite:///{(EMBEDDED_STORE_DIR / 'mlflow.db').resolve()}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(os.environ.get("MLFLOW_REGISTRY_URI") or uri)
    return uri


def use_experiment(name: str) -> str:
    """Configure tracking, then select (creating if needed) the experiment `name`; return its id.

    On a SQLite store, artifacts go to an `artifacts/` folder beside the database file; a tracking
    server chooses its own (proxied) artifact location.
    """
    configure_tracking()
    if mlflow.get_experiment_by_name(name) is None:
        uri, location = mlflow.get_tracking_uri(), None
        if uri.startswith("sqlite:///"):
            database = Path(uri.removeprefix("sqlite:///"))
            location = (database.parent / "artifacts").resolve().as_uri()
        mlflow.create_experiment(name, artifact_location=location)
    return str(mlflow.set_experiment(name).experiment_id)


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
