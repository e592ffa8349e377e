"""What every script shares: `--config` / `--set` arguments, logging set-up, and exit codes.

Scripts stay thin: parse arguments, load the config, call one library function, and turn the
library's named errors into one clear line on stderr and a non-zero exit code. The processes a
script starts (tuning workers) set up logging here too.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from mlflow.exceptions import MlflowException

from mlops.config import Config, load_config
from mlops.errors import MLOpsError

DEFAULT_CONFIG = Path("configs/default.yaml")
EXIT_OK = 0
EXIT_ERROR = 1
# promote: the challenger failed a gate and nothing moved, a normal outcome (k8s Jobs map it to 0).
EXIT_NOT_PROMOTED = 3

log = logging.getLogger("mlops")


def make_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="YAML config file")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.torch_mlp.max_epochs=20 (repeatable)",
    )
    return parser


def run_step(args: argparse.Namespace, step: Callable[[Config], int]) -> int:
    """Load the config named by `args` and run `step`; named errors become one line, exit 1."""
    try:
        config = load_config(args.config, args.overrides)
        return step(config)
    except MLOpsError as err:
        log.error("%s", err)
        return EXIT_ERROR
    except MlflowException as err:
        # Tracking server down, registry refused, ...: one line, not MLflow's stack trace.
        log.error("MLflow error: %s", str(err.message).strip().splitlines()[0])
        return EXIT_ERROR


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    setup_logging()
    return parser.parse_args(argv)


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
