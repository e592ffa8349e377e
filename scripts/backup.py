"""Back up the MLflow store and the Optuna storage to one file, or restore such a file.

python scripts/backup.py create [--out backups] [--mlflow-db URI] [--artifacts DIR]
python scripts/backup.py restore BACKUP [--force] [--mlflow-db URI] [--artifacts DIR]

Defaults: the embedded store (.mlflow/: mlflow.db and artifacts/) and the config's Optuna
storage (OPTUNA_STORAGE overrides it). A PostgreSQL store is dumped with pg_dump; its artifacts
live in the object store (k8s/README.md: versioning and lifecycle of the bucket). Restore refuses
a target that holds data unless --force. Exit codes: 0 done, 1 error.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone, no install

from mlops.backup import create, restore
from mlops.cli import EXIT_OK, make_parser, parse, run_step
from mlops.config import EMBEDDED_STORE_DIR, Config
from mlops.tuning.study import shown_url, storage_url


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__ or "")
    parser.add_argument("action", choices=["create", "restore"])
    parser.add_argument("backup", nargs="?", type=Path, help="restore: the .tar.gz to restore")
    parser.add_argument("--out", type=Path, default=Path("backups"), help="create: folder")
    parser.add_argument("--mlflow-db", default=f"sqlite:///{EMBEDDED_STORE_DIR / 'mlflow.db'}")
    parser.add_argument("--artifacts", default=str(EMBEDDED_STORE_DIR / "artifacts"))
    parser.add_argument("--force", action="store_true", help="restore: replace what is there")
    args = parse(parser, argv)
    if args.action == "restore" and args.backup is None:
        parser.error("restore needs the BACKUP file")

    def step(config: Config) -> int:
        parts = {"mlflow": args.mlflow_db, "optuna": storage_url(config.tune)}
        if "://" not in args.artifacts:  # a local folder; an s3:// bucket has its own versions
            parts["artifacts"] = args.artifacts
        if args.action == "create":
            print(f"backup: {create(parts, args.out)} ({', '.join(parts)})")
        else:
            restored = restore(args.backup, parts, args.force)
            shown = ", ".join(f"{name} -> {shown_url(parts[name])}" for name in restored)
            print(f"restored from {args.backup}: {shown}")
        return EXIT_OK

    return run_step(args, step)


if __name__ == "__main__":
    sys.exit(main())
