"""Serve a registered model over HTTP: MLflow scoring protocol and Open Inference Protocol v2.

python scripts/serve.py --config configs/default.yaml [--host 0.0.0.0] [--port 8080]
    [--model-uri models:/<name>@champion] [--workers 2]
Environment: HOST, PORT, MODEL_URI (flags win), MLOPS_API_TOKEN, MLOPS_ADMIN_TOKEN,
MLFLOW_TRACKING_URI. Endpoints and settings: docs/serving.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone, no install

from mlops.cli import make_parser, parse, run_step
from mlops.config import Config
from mlops.serving.server import serve
from mlops.serving.settings import server_settings


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__ or "")
    parser.add_argument("--host", help="address to listen on (env HOST; default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (env PORT; default 8080)")
    parser.add_argument("--model-uri", help="models:/name@alias, models:/name/3, runs:/..., path")
    parser.add_argument("--workers", type=int, help="worker processes (default serve.workers)")
    args = parse(parser, argv)
    if args.workers is not None:  # checked with the rest of the config
        args.overrides.append(f"serve.workers={args.workers}")

    def step(config: Config) -> int:
        return serve(server_settings(config, os.environ, args.host, args.port, args.model_uri))

    return run_step(args, step)


if __name__ == "__main__":
    sys.exit(main())
