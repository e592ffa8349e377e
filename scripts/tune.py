"""Tune every family with Optuna; register the best trial's model as `challenger`.

python scripts/tune.py --config configs/default.yaml [--workers N] [--trials N] [--timeout S]
                       [--family linear --family torch_mlp] [--no-register]

--trials is each family study's target of finished trials, counted over every worker and machine
on that study; running again resumes the studies towards it. Flags override `tune.*` in the config.
--no-register runs the trials only: for processes on several machines sharing the studies, after
which one run without it registers the best trial once (the k8s tune and tune-register Jobs).
"""

from __future__ import annotations

import argparse
import sys
import typing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone, no install

from mlops.cli import EXIT_OK, make_parser, parse, run_step
from mlops.config import Config, Family
from mlops.tune import tune


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__ or "")
    parser.add_argument("--workers", type=int, help="worker processes on this machine")
    parser.add_argument("--trials", type=int, help="finished trials per family study (total)")
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="no trial starts after")
    parser.add_argument(
        "--family", action="append", choices=typing.get_args(Family), help="tune only these"
    )
    parser.add_argument("--no-register", action="store_true", help="trials only, no challenger")
    args = parse(parser, argv)
    args.overrides += _flag_overrides(args)

    def step(config: Config) -> int:
        result = tune(config, register=not args.no_register)
        for summary in result.session.summaries.values():
            print(f"{summary.family}: {summary.finished}/{summary.target} trials, {summary.counts}")
        best = result.best
        registered = f"v{result.version}" if result.version else "not registered (--no-register)"
        print(
            f"challenger: {config.registered_model} {registered} ({best.family} trial "
            f"{best.best_trial}, validation {config.train.selection_metric}={best.best_value:.4f})"
        )
        return EXIT_OK

    return run_step(args, step)


def _flag_overrides(args: argparse.Namespace) -> list[str]:
    flags = {"workers": args.workers, "trials": args.trials, "timeout_s": args.timeout}
    overrides = [f"tune.{key}={value}" for key, value in flags.items() if value is not None]
    if args.family:
        overrides.append(f"tune.families=[{', '.join(args.family)}]")
    return overrides


if __name__ == "__main__":
    sys.exit(main())
