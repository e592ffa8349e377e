"""Send a share of the prediction traffic to a second version (the `canary` alias), or stop.

python scripts/canary.py --config configs/default.yaml --version N --weight 10 [--mode shadow]
python scripts/canary.py --config configs/default.yaml --stop

Servers that follow an alias pick the change up on their next alias check (docs/serving.md,
"Canary"). `scripts/promote.py --version N` graduates the canary through the normal gates.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone, no install

from mlops.cli import EXIT_OK, make_parser, parse, run_step
from mlops.config import Config
from mlops.registry import CANARY_MODES, start_canary, stop_canary
from mlops.tracking import configure_tracking


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__ or "")
    parser.add_argument("--version", help="registered version to send traffic to")
    parser.add_argument("--weight", type=float, help="percent of prediction requests (0-100)")
    parser.add_argument(
        "--mode",
        choices=CANARY_MODES,
        default="split",
        help="split: the canary answers its share; shadow: it gets a copy, the champion answers",
    )
    parser.add_argument("--stop", action="store_true", help="remove the canary and its tags")
    args = parse(parser, argv)
    if args.stop == (args.version is not None) or (args.version is None) != (args.weight is None):
        parser.error("give either --version N --weight PERCENT, or --stop")

    def step(config: Config) -> int:
        configure_tracking()
        name = config.registered_model
        if args.stop:
            stopped = stop_canary(name)
            print(f"canary stopped: {name} v{stopped}" if stopped else f"{name} had no canary")
            return EXIT_OK
        start_canary(name, args.version, args.weight, args.mode)
        share = "answers" if args.mode == "split" else "gets a copy of"
        print(f"canary: {name} v{args.version} {share} {args.weight:g} % of requests")
        return EXIT_OK

    return run_step(args, step)


if __name__ == "__main__":
    sys.exit(main())
