"""Validate, snapshot, split and profile the configured data set; record it in MLflow.

python scripts/prepare.py --config configs/default.yaml [--set data.source=my.csv]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone, no install

from mlops.cli import EXIT_OK, make_parser, parse, run_step
from mlops.config import Config
from mlops.prepare import prepare


def main(argv: list[str] | None = None) -> int:
    args = parse(make_parser(__doc__ or ""), argv)

    def step(config: Config) -> int:
        prepare(config)
        return EXIT_OK

    return run_step(args, step)


if __name__ == "__main__":
    sys.exit(main())
