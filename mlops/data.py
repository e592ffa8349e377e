"""The data: reading the raw data set, keeping an immutable copy of it, splitting it reproducibly,
and reading back what prepare wrote (`load_prepared`), which every later stage starts from.

The raw input is a data set bundled with scikit-learn (`sklearn:breast_cancer`, `sklearn:diabetes`)
or a user's CSV / Parquet file. Column kinds are decided once here: numeric columns become float64,
categorical ones strings, so training, the logged signature and serving agree on types.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.model_selection import train_test_split

from mlops.config import DataConfig
from mlops.errors import DataError

BUNDLED = {"breast_cancer": "load_breast_cancer", "diabetes": "load_diabetes"}
SPLIT_NAMES = ("train", "validation", "test")


@dataclass(frozen=True)
class RawData:
    frame: pd.DataFrame
    snapshot: Path  # the immutable copy of the raw input
    digest: str  # sha256 of the snapshot's bytes


@dataclass(frozen=True)
class Splits:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame

    def named(self) -> dict[str, pd.DataFrame]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


@dataclass(frozen=True)
class PreparedData:
    splits: Splits
    manifest: dict[str, Any]
    profile: dict[str, Any]

    @property
    def digest(self) -> str:
        return str(self.manifest["digest"])

    def xy(self, split: str) -> tuple[pd.DataFrame, pd.Series]:
        frame = self.splits.named()[split]
        target = self.manifest["target"]
        return frame.drop(columns=[target]), frame[target]


def load_raw(config: DataConfig, snapshot_dir: Path) -> RawData:
    """Read the configured source and keep a read-only copy of its bytes in `snapshot_dir`."""
    if config.source.startswith("sklearn:"):
        frame = _load_bundled(config.source.removeprefix("sklearn:"), config.target)
        snapshot = _snapshot_frame(frame, snapshot_dir, config.source.removeprefix("sklearn:"))
    else:
        path = Path(config.source)
        frame = read_table(path)
        snapshot = _snapshot_file(path, snapshot_dir)
    return RawData(frame=frame, snapshot=snapshot, digest=file_digest(snapshot))


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV or Parquet file; any problem becomes a `DataError` naming the file."""
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in {".csv", ".parquet", ".pq"}:
        raise DataError(f"data file {path}: expected a .csv or .parquet file, got {suffix!r}")
    try:
        return pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"data file {path} cannot be parsed as CSV: {_first_line(err)}") from None
    except (OSError, ValueError) as err:  # pyarrow's errors derive from these
        raise DataError(f"data file {path} cannot be read: {_first_line(err)}") from None


def coerce_types(frame: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    """Numeric columns as float64, categorical ones as strings (missing stays missing)."""
    out = frame.copy()
    for column, kind in kinds.items():
        if kind == "numeric":
            out[column] = out[column].astype("float64")
        else:
            values = out[column]
            out[column] = values.where(values.isna(), values.astype(str)).astype(object)
    return out


def split(frame: pd.DataFrame, config: DataConfig, seed: int) -> Splits:
    """Train / validation / test, stratified on the target for classification."""
    stratify = frame[config.target] if config.task == "classification" else None
    rest, test = train_test_split(
        frame, test_size=config.test_fraction, random_state=seed, stratify=stratify
    )
    rest_stratify = rest[config.target] if config.task == "classification" else None
    validation_share = config.validation_fraction / (1.0 - config.test_fraction)
    train, validation = train_test_split(
        rest, test_size=validation_share, random_state=seed, stratify=rest_stratify
    )
    return Splits(train=train, validation=validation, test=test)


def splits_digest(splits: Splits) -> str:
    """One digest for the exact rows of all three splits: the data a model was judged on."""
    digest = hashlib.sha256()
    for name, frame in splits.named().items():
        digest.update(name.encode())
        digest.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    return digest.hexdigest()


def write_splits(splits: Splits, directory: Path) -> None:
    for name, frame in splits.named().items():
        frame.to_parquet(directory / f"{name}.parquet", index=True)


def read_splits(directory: Path) -> Splits:
    missing = [n for n in SPLIT_NAMES if not (directory / f"{n}.parquet").is_file()]
    if missing:
        raise DataError(
            f"no prepared data in {directory} (missing {missing[0]}.parquet): run prepare first"
        )
    frames = {n: pd.read_parquet(directory / f"{n}.parquet") for n in SPLIT_NAMES}
    return Splits(**frames)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_bundled(name: str, target: str) -> pd.DataFrame:
    if name not in BUNDLED:
        raise DataError(f"unknown bundled data set {name!r}; expected one of {sorted(BUNDLED)}")
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, BUNDLED[name])(as_frame=True)
    frame: pd.DataFrame = bunch.frame
    return frame.rename(columns={"target": target})


def _snapshot_frame(frame: pd.DataFrame, directory: Path, name: str) -> Path:
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as handle:
        frame.to_csv(handle, index=False)
    return _snapshot_file(Path(handle.name), directory, name=f"{name}.csv", move=True)


def _snapshot_file(source: Path, directory: Path, name: str = "", move: bool = False) -> Path:
    """Store `source` as `<directory>/<sha256 prefix>-<name>`, read-only; reuse an equal copy."""
    digest = file_digest(source)
    target = directory / f"{digest[:16]}-{name or source.name}"
    if not target.exists():
        directory.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        shutil.copyfile(source, partial)
        partial.chmod(0o444)
        partial.replace(target)
    if move:
        source.unlink()
    return target


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def read_manifest(directory: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((directory / "manifest.json").read_text())
    return manifest


def read_profile(directory: Path) -> dict[str, Any]:
    profile: dict[str, Any] = json.loads((directory / "profile.json").read_text())
    return profile


def load_prepared(config: DataConfig) -> PreparedData:
    """The splits, manifest and profile prepare wrote for `config`, checked against it."""
    directory = config.prepared_dir
    splits = read_splits(directory)
    manifest, profile = read_manifest(directory), read_profile(directory)
    if manifest["target"] != config.target or manifest["task"] != config.task:
        raise DataError(
            f"prepared data in {directory} is for target {manifest['target']!r} "
            f"({manifest['task']}); the config says {config.target!r}: run prepare again"
        )
    return PreparedData(splits=splits, manifest=manifest, profile=profile)
