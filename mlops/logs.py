"""Log set-up shared by the scripts and the processes they start.

Kept apart from `mlops.cli` so tuning workers can set up logging without importing MLflow
(about a second and a half of start-up they do not need).
"""

from __future__ import annotations

import logging
import os
import sys


def setup_logging() -> None:
    # Artifact progress bars flood logs and CI output; users can set it back to "true".
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # MLflow and Alembic are chatty at INFO (database migrations, artifact uploads).
    for name in ("alembic", "mlflow", "urllib3", "matplotlib"):
        logging.getLogger(name).setLevel(logging.WARNING)
