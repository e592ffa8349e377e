"""Promote the challenger to champion if it passes the gates; or roll the champion back.

python scripts/promote.py --config configs/default.yaml [--version N] [--ignore-champion]
python scripts/promote.py --config configs/default.yaml --rollback

Exit codes: 0 promoted (or rolled back), 3 not promoted (a gate failed; nothing moved), 1 error.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone, no install

from mlops.cli import EXIT_NOT_PROMOTED, EXIT_OK, make_parser, parse, run_step
from mlops.config import Config
from mlops.promote import promote, rollback


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__ or "")
    parser.add_argument("--version", help="registered version to judge (default: @challenger)")
    parser.add_argument(
        "--ignore-champion",
        action="store_true",
        help="judge by the absolute gates only, e.g. when the champion cannot score new columns",
    )
    parser.add_argument("--rollback", action="store_true", help="point @champion at @previous")
    args = parse(parser, argv)

    def step(config: Config) -> int:
        if args.rollback:
            current, restored = rollback(config)
            print(f"champion: {config.registered_model} v{restored} (rolled back from v{current})")
            return EXIT_OK
        decision = promote(config, args.version, args.ignore_champion)
        if decision.promoted:
            print(f"promoted: {decision.model} v{decision.challenger} is the champion")
            return EXIT_OK
        print(f"not promoted: {decision.model} v{decision.challenger}")
        for reason in decision.verdict.reasons:
            print(f"  - {reason}")
        return EXIT_NOT_PROMOTED

    return run_step(args, step)


if __name__ == "__main__":
    sys.exit(main())
