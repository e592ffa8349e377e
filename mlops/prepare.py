"""The prepare step: raw data set -> validated, split, profiled and recorded in MLflow.

Outputs (in `data.prepared_dir`, replaced as a whole, never half-written): train / validation /
test Parquet files, `profile.json` and `manifest.json` (digests, sizes, column kinds). The raw input
is kept as a read-only copy in `data.raw_dir`. A source that cannot be read stops the step before
anything is written or any MLflow run is started.
"""

from __future__ import annotations

import logging
import warnings
from datetime import UTC, datetime
from typing import Any

import mlflow

from mlops.config import Config
from mlops.data import (
    PreparedData,
    RawData,
    Splits,
    coerce_types,
    frame_digest,
    load_raw,
    remove,
    split,
    splits_digest,
    staged_folder,
    write_prepared,
)
from mlops.profile import build_profile
from mlops.tracking import owned_run, use_experiment
from mlops.validation import ValidationReport, validate

log = logging.getLogger(__name__)


def prepare(config: Config) -> PreparedData:
    data = config.data
    kept = set(data.raw_dir.iterdir()) if data.raw_dir.is_dir() else set()
    raw = load_raw(data, data.raw_dir)
    try:
        return _prepare(config, raw)
    except BaseException:
        if raw.snapshot not in kept:  # a snapshot this run made for data it refused: not kept
            remove(raw.snapshot)
        raise


def _prepare(config: Config, raw: RawData) -> PreparedData:
    data = config.data
    report = validate(raw.frame, data)
    splits = split(coerce_types(raw.frame, report.kinds), data, config.seed)
    profile = build_profile(splits.train, report.kinds, data.target, data.task)
    prepared = PreparedData(splits, _manifest(config, raw, report, splits), profile)
    use_experiment(config.experiment)
    tags = {"mlops.step": "prepare"}
    with owned_run(run_name="prepare", tags=tags), staged_folder(data.prepared_dir) as staging:
        _record(config, prepared)
        write_prepared(prepared, staging)
    log.info(
        "prepared %s: %s rows, digest %s", data.source, prepared.manifest["rows"], prepared.digest
    )
    return prepared


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


def _record(config: Config, prepared: PreparedData) -> None:
    manifest = prepared.manifest
    for name, frame in prepared.splits.named().items():
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
    mlflow.log_dict(prepared.profile, "profile.json")
