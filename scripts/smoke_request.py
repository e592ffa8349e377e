"""Smoke-test a running model server: wait until it is ready, then check one prediction.

python scripts/smoke_request.py --config configs/default.yaml [--url http://127.0.0.1:8080]

The request is the first rows of the prepared test split (run `make prepare` first), without the
target column, in MLflow's `dataframe_split` format, with `Authorization: Bearer $MLOPS_API_TOKEN`
when that is set. `make docker-smoke` and `make k8s-smoke` (CI) run it against the image and the
cluster; exit 0 when the server answered one prediction per row.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone, no install

from mlops.cli import EXIT_ERROR, EXIT_OK, log, make_parser, parse, run_step
from mlops.config import Config
from mlops.data import load_prepared


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__ or "")
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="the server's base URL")
    parser.add_argument("--timeout-s", type=float, default=180.0, help="how long to wait for ready")
    parser.add_argument("--rows", type=int, default=2, help="rows in the prediction request")
    args = parse(parser, argv)

    def step(config: Config) -> int:
        if not wait_until_ready(args.url, args.timeout_s):
            log.error("%s is not ready after %.0f s", args.url, args.timeout_s)
            return EXIT_ERROR
        body = request_body(config, args.rows)
        predictions = post_json(f"{args.url}/invocations", body).get("predictions")
        if not isinstance(predictions, list) or len(predictions) != args.rows:
            log.error("expected %d predictions, got %r", args.rows, predictions)
            return EXIT_ERROR
        print(f"smoke: ready, {len(predictions)} predictions: {predictions}")
        return EXIT_OK

    return run_step(args, step)


def wait_until_ready(url: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=5) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass  # not listening or not ready yet: the server loads the model first
        time.sleep(2)
    return False


def request_body(config: Config, rows: int) -> dict[str, Any]:
    test = load_prepared(config.data).xy("test")[0]
    split = json.loads(test.head(rows).to_json(orient="split", index=False))
    return {"dataframe_split": {"columns": split["columns"], "data": split["data"]}}


def post_json(url: str, body: dict[str, Any]) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if os.environ.get("MLOPS_API_TOKEN"):  # a server that requires it (Secret model-server)
        headers["Authorization"] = f"Bearer {os.environ['MLOPS_API_TOKEN']}"
    request = urllib.request.Request(url, json.dumps(body).encode(), headers)  # data: a POST
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return answer


if __name__ == "__main__":
    sys.exit(main())
