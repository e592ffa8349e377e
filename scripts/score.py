"""Score a file or folder of partitions with a registered model; write Parquet.

python scripts/score.py INPUT OUTPUT [--model-uri URI] [--keep COLUMN]... [--probabilities]
    [--rejects PATH] [--config configs/default.yaml]

INPUT: a .csv / .parquet file, a folder or glob of them, s3://... or http(s)://... OUTPUT (and
--rejects): a .parquet path or s3://bucket/key. The model: --model-uri, else MODEL_URI, else
models:/<registered_model>@<score.model_alias>. Without --rejects the first invalid row stops the
job; with it, invalid rows go there with a `reason` column and the rest is scored. How it works:
docs/batch-scoring.md. Exit codes: 0 scored, 1 error (nothing written).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone, no install

from mlops.cli import EXIT_OK, make_parser, parse, run_step
from mlops.config import Config
from mlops.progress import Progress
from mlops.score import ScoreJob, score
from mlops.tracking import configure_tracking


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__ or "")
    parser.add_argument("input", help="file, folder, glob, s3:// or http(s):// URL")
    parser.add_argument("output", help="the .parquet file to write (a path or s3://bucket/key)")
    parser.add_argument("--model-uri", help="default: MODEL_URI, else the champion")
    parser.add_argument(
        "--keep", action="append", default=[], metavar="COLUMN", help="copy to output (repeatable)"
    )
    parser.add_argument("--probabilities", action="store_true", help="add probability_<class>")
    parser.add_argument("--rejects", help="write invalid rows here instead of stopping")
    args = parse(parser, argv)

    def step(config: Config) -> int:
        configure_tracking()
        alias_uri = f"models:/{config.registered_model}@{config.score.model_alias}"
        job = ScoreJob(
            input=args.input,
            output=args.output,
            model_uri=args.model_uri or os.environ.get("MODEL_URI") or alias_uri,
            keep=tuple(args.keep),
            probabilities=args.probabilities,
            rejects=args.rejects,
        )
        terminal = sys.stderr if sys.stderr.isatty() else None
        progress = Progress(terminal, config.score.log_every_batches)
        result = score(job, config.score, config.registered_model, progress)
        model = f"{result.model.name} v{result.model.version}"
        speed = result.scored / max(result.seconds, 1e-9)
        print(f"scored: {result.scored} rows -> {job.output} ({model}, {speed:,.0f} rows/s)")
        print(f"rejected: {result.rejected} rows" + (f" -> {job.rejects}" if job.rejects else ""))
        return EXIT_OK

    return run_step(args, step)


if __name__ == "__main__":
    sys.exit(main())
