"""Benchmark tuning: MLflow tracking overhead and the speed-up of 2 workers (make bench-tune).

python scripts/bench_tune.py --config configs/default.yaml [--parallel-trials 40] [--repeats 2]

Prints the figures and writes them to bench-results/tune-<config name>.json. Uses temporary
stores, never the repository's; the prepared data must exist (make prepare).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone, no install

from mlops.bench_tune import bench_tune
from mlops.cli import EXIT_OK, make_parser, parse, run_step
from mlops.config import Config


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__ or "")
    parser.add_argument(
        "--parallel-trials", type=int, default=40, help="trials per scikit-learn family"
    )
    parser.add_argument(
        "--repeats", type=int, default=2, help="A-B-B-A rounds per comparison (fastest counts)"
    )
    args = parse(parser, argv)

    def step(config: Config) -> int:
        out = Path("bench-results") / f"tune-{args.config.stem}.json"
        results = bench_tune(config, args.parallel_trials, args.repeats, out)
        tracking, parallel = results["tracking"], results["parallel"]
        wall = {k: ", ".join(f"{s:.1f}" for s in v) for k, v in results["wall_s"].items()}
        cpu = {k: ", ".join(f"{s:.1f}" for s in v) for k, v in results["cpu_s"].items()}
        print(
            f"tracking overhead: {tracking['overhead_wall']:.1%} of tuning wall time "
            f"(tracked {wall['tracked']} s, untracked {wall['untracked']} s), "
            f"{tracking['overhead_cpu']:.1%} of CPU time (tracked {cpu['tracked']} s, "
            f"untracked {cpu['untracked']} s); goal <= {tracking['goal_max']:.0%}"
        )
        trials = {k: ", ".join(f"{s:.1f}" for s in v) for k, v in results["trials_wall_s"].items()}
        print(
            f"2 workers vs 1: {parallel['speedup']:.2f}x running the trials (1 worker "
            f"{trials['one_worker']} s, 2 workers {trials['two_workers']} s, {results['cpus']} "
            f"CPUs; goal >= {parallel['goal_min']}x); whole session with summaries "
            f"{parallel['session_speedup']:.2f}x ({wall['one_worker']} s, {wall['two_workers']} s)"
        )
        print(
            f"untracked, the workers alone: {parallel['speedup_untracked']:.2f}x (1 worker "
            f"{trials['one_worker_untracked']} s, 2 workers {trials['two_workers_untracked']} s)"
        )
        print(
            f"this machine's own 2-core ceiling (forest fits, 1 vs 2 at once): "
            f"{parallel['machine_ceiling']:.2f}x, so the speed-up is "
            f"{parallel['speedup'] / parallel['machine_ceiling']:.0%} of what 2 cores gave here"
        )
        print(f"written to {out}")
        return EXIT_OK

    return run_step(args, step)


if __name__ == "__main__":
    sys.exit(main())
