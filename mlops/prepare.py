"""The prepare step: raw data set -> validated, split, profiled and recorded in MLflow.

Outputs (in `data.prepared_dir`, replaced as a whole, never half-written): train / validation /
test Parquet files, `profile.json` and `manifest.json` (digests, sizes, column kinds). The raw input
is kept as a read-only copy in `data.raw_dir`. A source that cannot be read stops the step before
anything is written or any MLflow run is started.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow

from mlops.config import Config
from mlops.data import (
    RawData,
    Splits,
    coerce_types,
    frame_digest,
    load_raw,
    split,
    splits_digest,
    write_splits,
)
from mlops.profile import build_profile
from mlops.tracking import configure_tracking, use_experiment
from mlops.validation import ValidationReport, validate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    directory: Path
    manifest: dict[str, Any]


def prepare(config: Config) -> Prepared:
    data = config.data
    raw = load_raw(data, data.raw_dir)
    report = validate(raw.frame, data)
    frame = coerce_types(raw.frame, report.kinds)
    splits = split(frame, data, config.seed)
    profile = build_profile(splits.train, report.kinds, data.target, data.task)
    manifest = _manifest(config, raw, report, splits)
    configure_tracking()
    use_experiment(config.experiment)
    with mlflow.start_run(run_name="prepare", tags={"mlops.step": "prepare"}):
        _record(config, splits, manifest, profile)
        _write_atomically(data.prepared_dir, splits, manifest, profile)
    log.info("prepared %s: %s rows, digest %s", data.source, manifest["rows"], manifest["digest"])
    return Prepared(directory=data.prepared_dir, manifest=manifest)


def _manifest(
    config: Config, raw: RawData, report: ValidationReport, splits: Splits
) -> dict[str, Any]:
    return {
        "digest": splits_digest(splits),
        # The rows promote scores the challenger and the champion on (mlops/promote.py).
        "test_digest": frame_digest(splits.test),
        "source": config.data.source,
        "raw_snapshot": str(raw.snapshot),
        "raw_digest": raw.digest,
        "target": config.data.target,
        "task": config.data.task,
        "seed": config.seed,
        "rows": {name: len(frame) for name, frame in splits.named().items()},
        "kinds": report.kinds,
        "duplicate_rows": report.duplicate_rows,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _record(
    config: Config, splits: Splits, manifest: dict[str, Any], profile: dict[str, Any]
) -> None:
    for name, frame in splits.named().items():
        with warnings.catch_warnings():
            # MLflow hints about ambiguous local sources and integer targets; neither applies.
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_pandas(
                frame, source=manifest["raw_snapshot"], targets=config.data.target, name=name
            )
        mlflow.log_input(dataset, context=name)
    mlflow.log_params(
        {"source": config.data.source, "data_digest": manifest["digest"], "seed": config.seed}
    )
    mlflow.log_metrics({f"rows_{n}": float(r) for n, r in manifest["rows"].items()})
    mlflow.log_metric("duplicate_rows", manifest["duplicate_rows"])
    mlflow.log_dict(manifest, "manifest.json")
    mlflow.log_dict(profile, "profile.json")


def _write_atomically(
    directory: Path, splits: Splits, manifest: dict[str, Any], profile: dict[str, Any]
) -> None:
    """Write into a sibling temp folder, then swap it in: readers see old or new, never half."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the prepared data is not secret
    try:
        write_splits(splits, staging)
        (staging / "profile.json").write_text(json.dumps(profile, indent=2))
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
        _swap(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap(staging: Path, directory: Path) -> None:
    if not directory.exists():
        staging.rename(directory)
        return
    retired = directory.with_name(f".{directory.name}-old")
    shutil.rmtree(retired, ignore_errors=True)
    directory.rename(retired)
    staging.rename(directory)
    shutil.rmtree(retired, ignore_errors=True)
