"""Where MLflow records runs and models: the environment's server, or the embedded local store;
and the git commit every run and model records.

With `MLFLOW_TRACKING_URI` unset, runs go to a SQLite database and a local artifact folder under
`.mlflow/` in the repository (git-ignored), so the pipeline works offline on a fresh clone.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow import ActiveRun, MlflowClient

from mlops.config import EMBEDDED_STORE_DIR

log = logging.getLogger(__name__)

# MLflow's HTTP client defaults (7 retries, backoff factor 2, 120 s timeout) let a step hang for
# many minutes on a dead or stuck tracking server. These bound one call to about 35 s; each can be
# overridden in the environment (names from mlflow.environment_variables).
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
# An open run's `mlops.heartbeat` tag is refreshed this often; a RUNNING run of another host whose
# heartbeat is older than STALE_AFTER_S (ten missed beats, room for clock skew) is abandoned.
HEARTBEAT_S = 60.0
STALE_AFTER_S = 600.0


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
    experiment_id = str(mlflow.set_experiment(name).experiment_id)
    fail_abandoned_runs(experiment_id)
    return experiment_id


@contextmanager
def owned_run(**start_run: Any) -> Iterator[ActiveRun]:
    """`mlflow.start_run(**start_run)` tagged with the process it belongs to, its heartbeat tag
    refreshed while it is open, so that a later step on any host can tell an abandoned run."""
    tags = {**start_run.pop("tags", {}), **_owner_tags(), "mlops.heartbeat": _now()}
    with mlflow.start_run(tags=tags, **start_run) as run:
        stop = threading.Event()
        beat = threading.Thread(target=_beat, args=(run.info.run_id, stop), daemon=True)
        beat.start()
        try:
            yield run
        finally:
            stop.set()  # not joined: a beat stuck on an unreachable server must not hold us up


def _owner_tags() -> dict[str, str]:
    return {"mlops.host": socket.gethostname(), "mlops.pid": str(os.getpid())}


def _now() -> str:
    return str(int(time.time()))


def _beat(run_id: str, stop: threading.Event) -> None:
    client = MlflowClient()
    while not stop.wait(HEARTBEAT_S):
        try:
            client.set_tag(run_id, "mlops.heartbeat", _now())
        except Exception:  # the server away for a while: the next beat may reach it
            log.debug("heartbeat of run %s not recorded", run_id, exc_info=True)


def fail_abandoned_runs(experiment_id: str) -> None:
    """Mark FAILED, with the reason as a tag, the pipeline's RUNNING runs of the experiment that
    nobody will end: on this host, those whose process is gone (killed, or cut off from the
    tracking server before it could end the run); on any host (another pod), those whose
    heartbeat stopped more than STALE_AFTER_S ago."""
    host, client = socket.gethostname(), MlflowClient()
    query = "attributes.status = 'RUNNING' and tags.`mlops.host` != ''"
    for run in client.search_runs([experiment_id], query):
        reason = _abandoned(run.data.tags, host)
        if reason:
            client.set_tag(run.info.run_id, "mlops.failure_reason", reason)
            client.set_terminated(run.info.run_id, "FAILED")
            log.warning("run %s (%s) marked FAILED: %s", run.info.run_id, run.info.run_name, reason)


def _abandoned(tags: dict[str, str], this_host: str) -> str:
    """Why a RUNNING run with these tags is abandoned, or "" if it may still be running. The
    heartbeat also covers this host: a restarted container keeps its pod's name and may reuse
    the dead process's pid."""
    owner, pid = tags["mlops.host"], int(tags.get("mlops.pid", "0"))
    if owner == this_host and pid and not _alive(pid):
        return f"process {pid} on {owner} ended without finishing the run"
    silent_s = time.time() - float(tags.get("mlops.heartbeat", "inf"))
    return f"no heartbeat from {owner} for {silent_s:.0f} s" if silent_s > STALE_AFTER_S else ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


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
