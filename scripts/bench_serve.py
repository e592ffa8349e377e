"""Benchmark the model server against `mlflow models serve` on the same models (make bench).

python scripts/bench_serve.py --config configs/default.yaml [--out bench-results]
    [--families linear random_forest torch_mlp] [--workers 1] [--duration-s 5]

Trains small models of each family in a temp store, serves each with both servers in turn and
writes the table to <out>/serving.md and serving.json. Takes several minutes; CI does not run it.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone, no install

from mlops.cli import EXIT_OK, make_parser, parse, run_step
from mlops.config import Config
from mlops.serving.bench import BenchOptions, run_bench
from mlops.serving.bench_models import FAMILIES


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__ or "")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--families", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--workers", type=int, default=1, help="worker processes per server")
    parser.add_argument("--duration-s", type=float, default=5.0, help="seconds per load cell")
    args = parse(parser, argv)

    def step(config: Config) -> int:
        options = BenchOptions(
            args.config, args.out, tuple(args.families), args.workers, args.duration_s
        )
        report = run_bench(options)
        print((args.out / "serving.md").read_text())
        missed = [check for check in report["targets"] if not check["met"]]
        print(f"{len(report['targets']) - len(missed)}/{len(report['targets'])} targets met")
        return EXIT_OK

    return run_step(args, step)


if __name__ == "__main__":
    sys.exit(main())
